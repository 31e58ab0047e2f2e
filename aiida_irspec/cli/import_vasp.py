"""``aiida-irspec import-vasp``: import existing VASP linear-response results into an AiiDA group."""

import pathlib
import re
import sys

import click

from aiida_irspec.cli.utils import echo_error_and_exit, format_table, load_profile_or_exit, user_errors

_VASP_NAME = re.compile(r"OUTCAR(\..+)?|vasprun\.xml(\.gz)?")


def _natural_key(path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_vasp_outputs(paths):
    """Every OUTCAR, OUTCAR.gz, OUTCAR.*, vasprun.xml(.gz) under the paths (recursively), plus the paths
    that are files themselves; naturally sorted (OUTCAR.9 before OUTCAR.10), without duplicates."""
    found = set()
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and _VASP_NAME.fullmatch(p.name))
        else:
            found.add(path)
    return sorted(found, key=_natural_key)


@click.command("import-vasp")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-g", "--group", "group_label", required=True, help="Group to put the BornChargesData in "
              "(created if missing).")
@click.option("-p", "--profile", default=None, help="AiiDA profile (default: the default profile).")
@user_errors
def import_vasp(paths, group_label, profile):
    """Import VASP Born charges (OUTCAR, OUTCAR.gz, OUTCAR.*, vasprun.xml[.gz]) found under PATHS.

    Each file is stored as a SinglefileData and parsed by the calcfunction irspec.import_vasp_file into a
    StructureData and a BornChargesData, which goes into the group. A file whose content (sha256) was
    imported before is not imported again ("already imported"; its node is added to the group).
    Malformed files are reported and skipped. Exit code: 0 when every file imported (or was already
    imported), 1 when some files failed, 2 when no file was found.
    """
    files = find_vasp_outputs(paths)
    if not files:
        echo_error_and_exit(f"no OUTCAR or vasprun.xml files under {', '.join(map(str, paths))}", 2)
    load_profile_or_exit(profile)
    from aiida import orm

    from aiida_irspec.calculations.import_vasp import ERROR, import_vasp_files

    group, _ = orm.Group.collection.get_or_create(group_label)
    stderr = click.get_text_stream("stderr")
    width = len(str(len(files)))
    counter = iter(range(1, len(files) + 1))

    def progress(path):
        if stderr.isatty():
            stderr.write(f"\r[{next(counter):>{width}}/{len(files)}] {str(path)[-40:]:<40}")
            stderr.flush()

    results = import_vasp_files(files, group=group, progress=progress)
    if stderr.isatty():
        stderr.write("\r" + " " * (width * 2 + 45) + "\r")
    rows = []
    for result in results:
        node = result.born_charges
        if node is None:
            rows.append((result.path, "", "", "", f"error: {result.message}"))
            continue
        species = " ".join(dict.fromkeys(node.symbols))
        rows.append((result.path, node.base.attributes.get("n_atoms"), species, f"{node.sum_rule_max:.1e}",
                     f"{result.status} (pk {node.pk})"))
    click.echo(format_table(rows, ("file", "atoms", "species", "|sum rule| (|e|)", "status")))
    counts = {status: sum(r.status == status for r in results) for status in {r.status for r in results}}
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"{len(results)} files: {summary}; group '{group.label}' holds {group.count()} nodes")
    sys.exit(1 if counts.get(ERROR) else 0)
