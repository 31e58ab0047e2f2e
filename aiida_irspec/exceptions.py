"""Errors that the package raises for bad input; the CLI turns them into one clean message."""

import functools
import tokenize
import zipfile
import zlib

#: What numpy and zipfile raise while reading a damaged or foreign ``.npz`` (cut off, bytes changed, an
#: unsupported zip feature): the readers turn these into a clean error or a parser exit code.
DAMAGED_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, NotImplementedError, RuntimeError, SyntaxError,
                      MemoryError, tokenize.TokenError, zipfile.BadZipFile, zlib.error)  # numpy parses headers


#: What CPython before 3.11.8 / 3.12.1 raises, now and then, when two threads build Python AST objects at once
#: (gh-106905): numpy parses every ``.npy`` header with ``ast.literal_eval``. The file is fine; reading it again is.
AST_RACE = "AST constructor recursion depth mismatch"


def _again_after_ast_race(read, rewind=None):
    """``read()``, once more (after ``rewind()``) when it met CPython's AST race (:data:`AST_RACE`)."""
    try:
        return read()
    except SystemError as error:
        if AST_RACE not in str(error):
            raise
        if rewind is not None:
            rewind()
        return read()


def numpy_load(source):
    """``numpy.load(source, allow_pickle=False)`` (a path or a binary handle) that survives CPython's AST race
    (:data:`AST_RACE`), also in the members of an ``.npz`` archive, which numpy reads when they are asked for."""
    import numpy as np

    rewind = None
    if hasattr(source, "seek"):
        start = source.tell()
        rewind = functools.partial(source.seek, start)
    data = _again_after_ast_race(functools.partial(np.load, source, allow_pickle=False), rewind)
    if isinstance(data, np.lib.npyio.NpzFile):
        data.__class__ = _npz_file_class()
    return data


@functools.cache
def _npz_file_class():
    import numpy as np

    class NpzFile(np.lib.npyio.NpzFile):
        """numpy's NpzFile whose members are read again after CPython's AST race (:data:`AST_RACE`)."""

        def __getitem__(self, key):
            return _again_after_ast_race(functools.partial(super().__getitem__, key))

    return NpzFile


def open_npz(source):
    """:func:`numpy_load` of an ``.npz`` archive (path or binary handle), pickles refused; ValueError (one of
    DAMAGED_NPZ_ERRORS) when the bytes are a single ``.npy`` array instead, e.g. an archive cut at its front."""
    import numpy as np

    data = numpy_load(source)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an .npz archive")
    return data


def require_finite(arrays, what, error=None):
    """Raise ``error`` (an exception class; InputError by default) naming the first of ``arrays`` (name ->
    array-like) that holds NaN or infinite values, and the first row (frame) where it does."""
    import numpy as np

    for name, array in arrays.items():
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
            rows = np.isfinite(array).reshape(len(array), -1).all(axis=1) if array.ndim else np.array([False])
            raise (error or InputError)(f"{what}: {name} holds NaN or infinite values (first in row "
                                        f"{int(np.argmin(rows))}); nothing written")


class IrspecError(Exception):
    """Base class of every error that is the user's input, not a bug."""

    exit_code = 2


class InputError(IrspecError, ValueError):
    """An argument or array has the wrong shape, type or value (NaN, negative time step, ...)."""


class MalformedFileError(IrspecError, ValueError):
    """A file could not be read: names the file, the line (1-based, or None) and what was expected."""

    def __init__(self, path, line, expected, found=None):
        self.path, self.line, self.expected, self.found = str(path), line, expected, found
        where = f"{self.path}, line {line}" if line is not None else self.path
        message = f"{where}: expected {expected}"
        if found is not None:
            message += f", found {found!r}"
        super().__init__(message)


class ModelError(IrspecError, ValueError):
    """A model cannot be used as asked (unknown species, incompatible file version, not fitted)."""


class PeriodicCellError(InputError):
    """A molecular quantity (dipole, Born charges from the dipole) was asked of a periodic cell."""

    exit_code = 11


class EngineError(IrspecError):
    """An engine's calculation failed (e.g. the SCF did not converge, or the MD blew up)."""

    exit_code = 12


class OutputError(IrspecError):
    """An output file cannot be written there: its folder is missing, read-only or full, it is a directory,
    a device or one of the command's own inputs (checked before the work starts where possible)."""

    exit_code = 14


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception (by the command line's handler), so that whatever is being written is
    cleaned up as on Ctrl-C; exit code 143 (128 + 15)."""


class ResourceError(InputError):
    """The job would need more memory (or time) than its documented limit: refused before allocating, with
    the estimate."""

    exit_code = 15
