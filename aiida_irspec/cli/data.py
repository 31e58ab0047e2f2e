"""``verdi data irspec``: list, show and export BornChargesData (a verdi plugin, entry point
``aiida.cmdline.data: irspec``)."""

import pathlib

import click
from aiida.cmdline.commands.cmd_data import verdi_data
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import decorators

from aiida_irspec.cli.utils import format_table, user_errors


@verdi_data.group("irspec")
def data_irspec():
    """Inspect and export aiida-irspec data (BornChargesData)."""


def _born_charges_argument():
    return arguments.DATUM(type=types.DataParamType(sub_classes=("aiida.data:irspec.born_charges",)))


@data_irspec.command("list")
@click.option("-g", "--group", "group_label", default=None, help="Only the nodes in this group.")
@decorators.with_dbenv()
def list_born_charges(group_label):
    """List BornChargesData: pk, formula, atoms, max |sum rule|, source file."""
    from aiida import orm

    from aiida_irspec.data.born_charges import BornChargesData

    query = orm.QueryBuilder()
    in_group = {}
    if group_label is not None:
        query.append(orm.Group, filters={"label": group_label}, tag="group")
        in_group = {"with_group": "group"}
    query.append(BornChargesData, tag="z", **in_group, project=[
        "id", "attributes.formula", "attributes.n_atoms", "attributes.sum_rule_max", "attributes.source"])
    query.order_by({"z": ["id"]})
    rows = [(pk, formula, n_atoms, f"{sum_rule:.1e}", (source or {}).get("path", ""))
            for pk, formula, n_atoms, sum_rule, source in query.iterall()]
    click.echo(format_table(rows, ("pk", "formula", "atoms", "|sum rule| (|e|)", "source")))


@data_irspec.command("show")
@_born_charges_argument()
@decorators.with_dbenv()
def show_born_charges(datum):
    """Print the Born charge matrices (rows: field direction a, columns: displacement direction b) and the
    dielectric tensor."""
    import numpy as np

    attributes = datum.base.attributes
    click.echo(f"BornChargesData<{datum.pk}> {attributes.get('formula')}, units {attributes.get('units')}")
    click.echo(f"convention: {attributes.get('convention')}")
    for key, value in sorted(datum.source.items()):
        click.echo(f"source.{key}: {value}")
    for index, (symbol, matrix) in enumerate(zip(datum.symbols, datum.born_charges), start=1):
        click.echo(f"ion {index} {symbol}")
        for row in matrix:
            click.echo("  " + " ".join(f"{value:10.5f}" for value in row))
    sum_rule = datum.sum_rule_violation()
    click.echo(f"sum over ions (acoustic sum rule), max |.| = {np.abs(sum_rule).max():.2e}")
    for row in sum_rule:
        click.echo("  " + " ".join(f"{value:10.5f}" for value in row))
    dielectric = datum.dielectric
    click.echo("dielectric tensor (epsilon_infinity):" + ("" if dielectric is not None else " none"))
    for row in dielectric if dielectric is not None else []:
        click.echo("  " + " ".join(f"{value:10.5f}" for value in row))


@data_irspec.command("export")
@_born_charges_argument()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="extxyz file to write (overwritten).")
@click.option("-s", "--structure", "structure_pk", type=int, default=None,
              help="PK of the StructureData of the atoms (default: the one its creator made or used).")
@decorators.with_dbenv()
@user_errors
def export_born_charges(datum, output, structure_pk):
    """Write the structure with its Born charges as extxyz: per-atom array ``born_charges`` (9 numbers,
    row-major Z[i]) and ``dielectric`` (9 numbers) in the comment line."""
    import ase.io
    from aiida import orm

    structure = orm.load_node(structure_pk) if structure_pk is not None else _structure_of(datum)
    atoms = datum.to_ase(structure)
    ase.io.write(output, atoms, format="extxyz")
    click.echo(f"wrote {output} ({len(atoms)} atoms, {atoms.get_chemical_formula()})")


def _structure_of(datum):
    """The StructureData that the creator of ``datum`` returned or took, with the same atoms in order."""
    from aiida import orm

    from aiida_irspec.exceptions import InputError

    creator = datum.creator
    candidates = []
    if creator is not None:
        links = creator.base.links
        candidates = (links.get_outgoing(node_class=orm.StructureData).all_nodes()
                      + links.get_incoming(node_class=orm.StructureData).all_nodes())
    for structure in candidates:
        if [structure.get_kind(site.kind_name).symbol for site in structure.sites] == datum.symbols:
            return structure
    raise InputError(f"no StructureData with the atoms of BornChargesData<{datum.pk}> next to its creator: "
                     "give one with --structure PK")
