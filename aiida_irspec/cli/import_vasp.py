"""``aiida-irspec import-vasp``: import existing VASP linear-response results into an AiiDA group."""

import contextlib
import pathlib
import signal
import sys
import threading

import click

from aiida_irspec.cli.utils import (SIGNAL_EXIT_CODES, echo_error_and_exit, format_table, load_profile_or_exit,
                                    user_errors)

#: Exit codes: 0 every VASP Born-charge output found was imported (or had been); 1 some could not be read;
#: 2 none was found (every file skipped); 130 / 143 stopped by Ctrl-C / SIGTERM (files before it imported whole).
EXIT_SOME_FAILED, EXIT_NOTHING_TO_IMPORT = 1, 2


@contextlib.contextmanager
def deferred_signals():
    """SIGINT and SIGTERM only recorded while the block runs (the list it yields gets the first signal), so that
    the import stops between two files: an exception raised by the signal inside a callback that Python runs at
    that moment (a garbage-collection callback of the database layer) would be ignored and the signal lost."""
    received = []

    def record(signum, frame):
        if not received:
            received.append(signal.Signals(signum))

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {number: signal.signal(number, record) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@click.command("import-vasp")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-g", "--group", "group_label", required=True, help="Group to put the BornChargesData in "
              "(created if missing).")
@user_errors
def import_vasp(paths, group_label):
    """Import the VASP Born charges found in PATHS (files, or folders searched recursively).

    Files are recognised by their content, whatever their name (OUTCAR, OUTCAR.12, vasprun.xml-born,
    vasprun_epsilon.xml, ...), plain or compressed (gzip, xz, bz2, lzma). Each OUTCAR or vasprun.xml with
    Born effective charges is stored as a SinglefileData and parsed by the calcfunction
    irspec.import_vasp_file into a StructureData and a BornChargesData, which goes into the group. A file
    whose content (sha256) was imported before is not imported again ("already imported"; its node is added to
    the group). Every other file is listed as skipped with the reason. Two imports running at the same time
    import each file once. Exit code: 0 every Born-charge file imported (or already imported); 1 some files
    could not be read (listed as errors); 2 no file with Born charges was found; 130 / 143 stopped by Ctrl-C /
    SIGTERM (the file in progress is finished, each file is imported whole; run the command again for the rest).
    """
    from aiida_irspec.calculations.import_vasp import find_files

    files = find_files(paths)
    if not files:
        echo_error_and_exit(f"no files under {', '.join(map(str, paths))}", EXIT_NOTHING_TO_IMPORT)
    load_profile_or_exit()  # the global `aiida-irspec -p PROFILE`, else the default one
    from aiida_irspec.calculations.import_vasp import (ERROR, SKIPPED, ImportStopped, get_or_create_group,
                                                       import_vasp_files)

    group = get_or_create_group(group_label)
    stderr = click.get_text_stream("stderr")
    width = len(str(len(files)))
    done = []

    def progress(path):
        done.append(path)
        if stderr.isatty():
            stderr.write(f"\r[{len(done):>{width}}/{len(files)}] {str(path)[-40:]:<40}")
            stderr.flush()

    with deferred_signals() as received:
        try:
            results = import_vasp_files(files, group=group, progress=progress, stop=lambda: received)
        except ImportStopped as stopped:
            if stderr.isatty():
                stderr.write("\r" + " " * (width * 2 + 45) + "\r")
            number = received[0]
            echo_error_and_exit(f"stopped by {number.name} after {len(stopped.results)} of {len(files)} files; each "
                                "file is imported whole or not at all: run the same command again for the rest",
                                SIGNAL_EXIT_CODES[number])
    if stderr.isatty():
        stderr.write("\r" + " " * (width * 2 + 45) + "\r")
    rows = []
    for result in results:
        node = result.born_charges
        if node is None:
            rows.append((result.path, "", "", "", f"{result.status}: {result.message}"))
            continue
        species = " ".join(dict.fromkeys(node.symbols))
        rows.append((result.path, node.base.attributes.get("n_atoms"), species, f"{node.sum_rule_max:.1e}",
                     f"{result.status} (pk {node.pk})"))
    click.echo(format_table(rows, ("file", "atoms", "species", "|sum rule| (|e|)", "status")))
    counts = {status: sum(r.status == status for r in results) for status in {r.status for r in results}}
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"{len(results)} files: {summary}; group '{group.label}' holds {group.count()} nodes")
    if counts.get(ERROR):
        sys.exit(EXIT_SOME_FAILED)
    if counts.get(SKIPPED) == len(results):
        echo_error_and_exit(f"no VASP OUTCAR or vasprun.xml with Born charges among the {len(results)} files "
                            "(all skipped: see the reasons above)", EXIT_NOTHING_TO_IMPORT)
