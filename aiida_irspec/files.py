"""Files the commands read and write, in one place (no AiiDA import).

- Atomic writes: :func:`atomic_write` (context manager) and :func:`write_bytes`, :func:`write_text`,
  :func:`write_json`, :func:`savez`, :func:`savefig`. The data go to a temporary file in the target's own
  folder (``.NAME.<random>.tmp``), are flushed and fsync'ed, and only then renamed over the target
  (``os.replace``, atomic on POSIX). A kill, a Ctrl-C or a full disk therefore leaves either the previous
  file or the complete new one, never a half-written one; the temporary file is removed on any error and on
  KeyboardInterrupt (only SIGKILL or a power cut can leave one behind, beside an intact target).
- Output paths checked before any work starts: :func:`check_outputs` (folder exists and is writable, the
  path is not a directory, a device or under a regular file, not one of the command's inputs, outputs
  distinct from each other).
- Input files: :func:`check_input_file` refuses directories, FIFOs, devices and sockets (which would hang
  or be read forever) before anything opens them.
- YAML: :func:`load_yaml` / :func:`parse_yaml` read YAML safely: safe tags only, duplicate keys refused
  with their lines, aliases bounded (an alias bomb is refused before it is expanded), size bounded.

Errors are the package's: :class:`~aiida_irspec.exceptions.OutputError` (exit code 14) for an output that
cannot be written, :class:`~aiida_irspec.exceptions.InputError` (exit code 2) for inputs.
"""

import contextlib
import json
import os
import secrets
import stat

from aiida_irspec.exceptions import InputError, OutputError

#: Largest YAML file :func:`load_yaml` reads, in bytes (campaign specs and protocols are a few kB).
MAX_YAML_BYTES = 8 * 1024 * 1024
#: Largest number of YAML nodes (scalars, lists, mappings) after expanding every alias.
MAX_YAML_NODES = 100_000


# ---------------------------------------------------------------------------------------------- outputs
def _describe_os_error(error):
    return error.strerror or type(error).__name__


def _target(path):
    """The file a write to ``path`` lands in: a symbolic link is followed (as ``open(path, "w")`` does)."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Context manager: a handle to a temporary file that replaces ``path`` when the block ends normally.

    mode: "wb" (bytes) or "w" (text, ``encoding`` default UTF-8). On any exception in the block (including
    KeyboardInterrupt and SystemExit) the temporary file is removed and ``path`` is left as it was. Raises
    OutputError (naming ``path`` and the system's reason: read-only file system, no space left, ...) when
    the file cannot be created, written or renamed.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    target = _target(path)
    folder, name = os.path.split(target)
    temporary = os.path.join(folder, f".{name[:200]}.{secrets.token_hex(8)}.tmp")  # within NAME_MAX (255)
    try:  # the temporary file is created inside: an interrupt right after its creation still removes it
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except OSError as error:
            raise OutputError(f"cannot write {os.fspath(path)}: {_describe_os_error(error)}") from None
        with os.fdopen(descriptor, mode, encoding=encoding or ("utf-8" if mode == "w" else None)) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise OutputError(f"cannot write {os.fspath(path)}: {_describe_os_error(error)}") from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        folder_descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_descriptor)
        finally:
            os.close(folder_descriptor)


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text(path, text):
    """Write ``text`` (str, UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path, value, **dumps_options):
    """Write ``json.dumps(value, **dumps_options)`` to ``path`` atomically."""
    write_text(path, json.dumps(value, **dumps_options))


def savez(path, compressed=False, **arrays):
    """``numpy.savez`` (or ``savez_compressed``) of ``arrays`` to exactly ``path`` (no ``.npz`` appended),
    atomically; pickles are never needed (object arrays are refused by numpy's reader anyway)."""
    import numpy as np

    with atomic_write(path, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)


def figure_format(path):
    """The matplotlib format of a figure path from its extension (``png``, ``svg``, ``pdf``, ...).

    Raises InputError for an extension matplotlib cannot write (checked before any work starts)."""
    from matplotlib.backend_bases import FigureCanvasBase

    extension = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if extension not in supported:
        raise InputError(f"{os.fspath(path)}: cannot write a figure of type {extension or '(no extension)'!r}; "
                         f"use one of {', '.join(sorted(supported))}")
    return extension


def savefig(figure, path, **savefig_options):
    """``figure.savefig`` to ``path`` atomically, the format taken from the extension (see figure_format)."""
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=figure_format(path), **savefig_options)


def same_file(first, second):
    """True when two paths name the same file (``os.path.samefile``: links count) or, when one does not
    exist yet, resolve to the same path."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist (yet): equal only when they resolve to the same path
        return os.path.realpath(first) == os.path.realpath(second)


def check_output(path, inputs=(), option="--output"):
    """Check before any work that ``path`` can be written; returns it unchanged.

    Refused with OutputError (exit code 14), naming ``option``: an empty path, a path ending in a slash, a
    directory, an existing path that is not a regular file (a device, a FIFO: it would be replaced), a folder
    that does not exist, a path under a regular file, a folder that is not writable (read-only file system,
    immutable folder, permissions: probed by creating and removing a file there), an existing file that is
    not writable, and an output that is one of ``inputs`` (compared with ``os.path.samefile``, so links
    count too).
    """
    text = os.fspath(path)
    if not text:
        raise OutputError(f"{option}: the output path is empty")
    if text.endswith(("/", os.sep)):
        raise OutputError(f"{option} {text}: names a folder; give the file's name")
    target = _target(text)
    if os.path.isdir(target):
        raise OutputError(f"{option} {text}: is a directory")
    if os.path.lexists(target) and os.path.exists(target):
        mode = os.stat(target).st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"{option} {text}: exists and is not a regular file ({_file_kind(mode)})")
    for given in inputs:
        if given is not None and same_file(text, os.fspath(given)):
            raise OutputError(f"{option} {text}: is one of the command's inputs; it would be overwritten")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        ancestor = folder
        while ancestor and not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor) if os.path.dirname(ancestor) != ancestor else ""
        if ancestor and not os.path.isdir(ancestor):
            raise OutputError(f"{option} {text}: {ancestor} is a file, not a folder")
        raise OutputError(f"{option} {text}: the folder {folder} does not exist")
    probe = os.path.join(folder, f".{os.path.basename(target)[:200]}.{secrets.token_hex(4)}.probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise OutputError(f"{option} {text}: cannot write in {folder}: {_describe_os_error(error)}") from None
    with contextlib.suppress(OSError):
        os.unlink(probe)
    if os.path.isfile(target) and not os.access(target, os.W_OK):  # immutable, or read-only for a non-root user
        raise OutputError(f"{option} {text}: the existing file is not writable")
    return path


def check_outputs(outputs, inputs=()):
    """:func:`check_output` of every ``(option, path)`` in ``outputs`` (None paths skipped), and the outputs
    distinct from each other. Returns nothing; raises OutputError."""
    seen = []
    for option, path in outputs:
        if path is None:
            continue
        check_output(path, inputs, option)
        for other_option, other in seen:
            if same_file(path, other):
                raise OutputError(f"{option} and {other_option} are the same file {os.fspath(path)}")
        seen.append((option, path))


def check_output_folder(folder, names=(), option="--output"):
    """Check before any work that the files ``names`` can be written in ``folder``; returns ``folder``.

    An existing folder: each ``folder/name`` passes :func:`check_output`. A folder that does not exist yet (the
    command creates it): its nearest existing ancestor must be a folder one can write in. Raises OutputError
    (exit code 14) for an empty path, a path that is a file or under a file, or a folder that cannot be written.
    """
    text = os.fspath(folder)
    if not text:
        raise OutputError(f"{option}: the folder path is empty")
    path = os.path.abspath(text)
    if os.path.isdir(path):
        for name in names:
            check_output(os.path.join(path, name), option=f"{option} {text}:")
        return folder
    ancestor = path
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise OutputError(f"{option} {text}: {ancestor} is a file, not a folder")
    probe = os.path.join(ancestor, f".irspec-probe.{secrets.token_hex(4)}")
    try:
        os.mkdir(probe)
    except OSError as error:
        raise OutputError(f"{option} {text}: cannot create a folder in {ancestor}: {_describe_os_error(error)}") \
            from None
    os.rmdir(probe)
    return folder


# ----------------------------------------------------------------------------------------------- inputs
def _file_kind(mode):
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def check_input_file(path, what="input file"):
    """Refuse, before anything opens it, an input that is not a regular file: returns ``path`` unchanged.

    Raises InputError naming ``what`` for a path that does not exist, a directory, a FIFO (reading would
    wait for a writer forever), a device (``/dev/zero`` never ends) or a socket.
    """
    text = os.fspath(path)
    try:
        mode = os.stat(text).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {text}: no such file") from None
    except OSError as error:
        raise InputError(f"{what} {text}: {_describe_os_error(error)}") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {text}: is {_file_kind(mode)}, not a regular file")
    return path


# ------------------------------------------------------------------------------------------------- YAML
def _loader_class():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):
        """Safe loader that refuses duplicate keys (with both lines)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key: the base constructor says so
                        continue
                    if first is not None:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first at line {first})", key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return Loader


def _children(node):
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return ()


def _check_expanded_size(node, source, max_nodes):
    """Raise InputError when the node graph, with every alias expanded, holds more than ``max_nodes`` nodes
    or an alias refers to a node that contains it (the document would be infinite)."""
    sizes, on_path, stack = {}, set(), [(node, False)]
    while stack:
        current, finished = stack.pop()
        key = id(current)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(current))
            if sizes[key] > max_nodes:
                raise InputError(f"{source}: the YAML expands to more than {max_nodes} values through its "
                                 f"aliases (*name), from line {current.start_mark.line + 1} on; write it out")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise InputError(f"{source}, line {current.start_mark.line + 1}: an alias refers to a node that "
                             "contains it (the document would be infinite)")
        on_path.add(key)
        stack.append((current, True))
        stack.extend((child, False) for child in _children(current) if id(child) not in sizes)


def parse_yaml(text, source="<string>", max_nodes=MAX_YAML_NODES):
    """The Python value of one YAML document ``text`` (str; None for an empty document).

    Safe tags only (``!!python/...`` refused); a duplicate key in a mapping, an alias expansion beyond
    ``max_nodes`` values or a recursive alias, and a syntax error raise InputError naming ``source`` and
    the line.
    """
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, source, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{source}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise InputError(f"{source}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def load_yaml(path, max_nodes=MAX_YAML_NODES, max_bytes=MAX_YAML_BYTES):
    """The Python value of the YAML file ``path`` (None when it is empty); see :func:`parse_yaml`.

    Refused with InputError: not a regular file (FIFO, device, directory), larger than ``max_bytes``, not
    UTF-8 text, and everything :func:`parse_yaml` refuses.
    """
    check_input_file(path, "YAML file")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"{os.fspath(path)}: larger than {max_bytes} bytes; not a YAML file this reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{os.fspath(path)}: not a text (UTF-8) file: {error.reason} at byte {error.start}") from None
    return parse_yaml(text, source=os.fspath(path), max_nodes=max_nodes)
