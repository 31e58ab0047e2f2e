"""``verdi data irspec``: the package's data from ``verdi`` (a verdi plugin, entry point ``aiida.cmdline.data:
irspec``): BornChargesData (``list``, ``show``, ``export``), IRSpectrumData (``spectrum show``, ``spectrum export``
as CSV or a figure) and PolarizationModelData (``model show``). Nodes are given by PK, UUID or label."""

import pathlib

import click
from aiida.cmdline.commands.cmd_data import verdi_data
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import decorators

from aiida_irspec.cli.utils import format_table, user_errors


@verdi_data.group("irspec")
def data_irspec():
    """Inspect and export aiida-irspec data: Born charges, IR spectra, polarization models."""


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

    from aiida_irspec.files import atomic_write, check_output

    check_output(output)
    structure = orm.load_node(structure_pk) if structure_pk is not None else _structure_of(datum)
    atoms = datum.to_ase(structure)
    with atomic_write(output, "w") as handle:
        ase.io.write(handle, atoms, format="extxyz")
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


# ---------------------------------------------------------------------------------------------- spectra
@data_irspec.group("spectrum")
def spectrum_group():
    """IR spectra (IRSpectrumData): show their settings and bands, export them as CSV or a figure."""


def _spectrum_argument():
    return arguments.DATUM("spectrum", type=types.DataParamType(sub_classes=("aiida.data:irspec.ir_spectrum",)))


def _spectrum_context(spectrum):
    """(bands name -> (lo, hi), the reference spectrum beside it or None, the campaign it belongs to or None), from
    its provenance: the settings of the ``aggregate_spectra`` that made it and the outputs of its WorkChain."""
    bands, reference, campaign = {}, None, None
    creator = spectrum.creator
    if creator is not None and "settings" in creator.inputs:
        bands = {name: tuple(limits) for name, limits in creator.inputs.settings.get_dict().get("bands", {}).items()}
    caller = creator.caller if creator is not None else None
    if caller is not None:
        outputs = caller.outputs
        if "reference_spectrum" in outputs and outputs.reference_spectrum.pk != spectrum.pk:
            reference = outputs.reference_spectrum
        campaign = caller.caller
    return bands, reference, campaign


@spectrum_group.command("show")
@_spectrum_argument()
@decorators.with_dbenv()
@user_errors
def show_spectrum(spectrum):
    """Print what SPECTRUM is (unit, runs, grid), every setting that made it, where it comes from and, when its
    settings name bands, their integrated intensities and peaks (+- 2 standard errors)."""
    import json

    bands, reference, campaign = _spectrum_context(spectrum)
    attributes = spectrum.base.attributes
    lo, hi = attributes.get("frequency_range_cm1")
    settings = dict(spectrum.settings)
    rows = [("node", f"IRSpectrumData<{spectrum.pk}> {spectrum.uuid}"),
            ("label", spectrum.label or "-"),
            ("unit", f"{spectrum.unit} (integrated: {attributes.get('integrated_unit')})"),
            ("runs", spectrum.n_runs),
            ("grid", f"{lo:g}-{hi:g} cm^-1, {attributes.get('n_points')} points"),
            ("made by", f"{spectrum.creator.process_label}<{spectrum.creator.pk}>" if spectrum.creator else "-"),
            ("campaign", f"{campaign.label} <{campaign.pk}>" if campaign is not None else "-"),
            ("reference", f"IRSpectrumData<{reference.pk}> (the engine's own dipoles)" if reference else "-")]
    rows += [(key, json.dumps(value) if not isinstance(value, str) else value) for key, value in settings.items()
             if key not in ("runs", "run_labels", "unit", "integrated_unit", "n_runs")]  # those are shown above
    click.echo(format_table(rows))
    if bands:
        summary = [(row["name"], f"{row['lo_cm1']:g}-{row['hi_cm1']:g}",
                    f"{row['integral']:.4g} +- {2 * row['integral_stderr']:.2g}",
                    f"{row['peak_cm1']:.0f} +- {2 * row['peak_stderr']:.0f}") for row in spectrum.band_summary(bands)]
        click.echo(f"\nBands (+- 2 standard errors; intensity in {attributes.get('integrated_unit')}):")
        click.echo(format_table(summary, ("band", "range (cm^-1)", "intensity", "peak (cm^-1)")))


@spectrum_group.command("export")
@_spectrum_argument()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="File to write: .csv for the table, .png/.svg/.pdf for the figure (overwritten atomically).")
@click.option("--range", "csv_range", type=click.Choice(["plot", "all"]), default="plot", show_default=True,
              help="Rows of a CSV: the plotted range, or all of them up to the Nyquist frequency.")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Draw the engine's reference spectrum beside it, when its campaign made one.")
@decorators.with_dbenv()
@user_errors
def export_spectrum(spectrum, output, csv_range, reference):
    """Write SPECTRUM as CSV (units, settings and its provenance in the header; its bands' summary) or as the
    figure of `aiida-irspec campaign report` (whole range and one panel per band, band clipped at zero)."""
    from aiida_irspec.files import check_output, figure_format
    from aiida_irspec.spectra.plotting import default_xlim, plot_spectra

    check_output(output)
    is_csv = output.suffix.lower() == ".csv"
    if not is_csv:
        figure_format(output)  # an extension matplotlib cannot write is refused before any work
    bands, beside, campaign = _spectrum_context(spectrum)
    beside = beside.to_averaged() if beside is not None and reference else None
    averaged = spectrum.to_averaged()
    xlim = default_xlim([averaged] + ([beside] if beside is not None else []))
    origin = f"campaign {campaign.label} <{campaign.pk}> uuid {campaign.uuid}; " if campaign is not None else ""
    if is_csv:
        averaged.to_csv(output, bands=bands or None, frequency_range=xlim if csv_range == "plot" else None,
                        header=[f"spectrum: IRSpectrumData<{spectrum.pk}> uuid {spectrum.uuid}; {origin}"
                                "exported by `verdi data irspec spectrum export`"])
    else:
        plot_spectra([averaged], labels=[f"{spectrum.label or 'spectrum'} ({averaged.n_runs} runs, band +-2 s.e.)"],
                     path=output, reference=beside, reference_label="engine's own dipoles (reference)",
                     bands=bands, xlim=xlim, title=f"IRSpectrumData<{spectrum.pk}>"
                     + (f", campaign {campaign.label}" if campaign is not None else ""))
    click.echo(f"wrote {output}")


# ---------------------------------------------------------------------------------------------- models
@data_irspec.group("model")
def model_group():
    """Polarization models (PolarizationModelData)."""


@model_group.command("show")
@arguments.DATUM("model", type=types.DataParamType(sub_classes=("aiida.data:irspec.polarization_model",)))
@decorators.with_dbenv()
@user_errors
def show_model(model):
    """Print MODEL's kind, descriptor, baseline, training set and errors (training, cross-validation and
    hold-out RMSE of Z, and of P when it was fitted to polarizations)."""
    from ase.data import chemical_symbols

    from aiida_irspec.cli.model import _metrics_rows

    hyper, metrics = model.hyperparameters, model.metrics
    creator = model.creator
    holdout = len([link for link in creator.base.links.get_incoming().all()
                   if link.link_label.startswith("holdout_born_charges__")]) if creator is not None else 0
    rows = [("node", f"PolarizationModelData<{model.pk}> {model.uuid}"),
            ("kind", f"{hyper['kind']} (basis {hyper['basis']}, regularization {hyper['regularization']}, "
                     f"{hyper['n_folds']}-fold cross-validation)"),
            ("descriptor", ", ".join(f"{key} {value}" for key, value in hyper["descriptor"].items())),
            ("species", " ".join(chemical_symbols[z] for z in model.base.attributes.get("species"))),
            ("baseline", f"{hyper['baseline']}: " + ", ".join(f"{element} {charge:+g}" for element, charge in
                                                                  (model.base.attributes.get("baseline_charges")
                                                                   or {}).items())),
            ("training set", f"{model.training_set_size} structures"
                             + (f", {holdout} held out" if holdout else "")),
            ("made by", f"{creator.process_label}<{creator.pk}>" if creator is not None else "-")]
    click.echo(format_table(rows))
    table = _metrics_rows("training", metrics.get("training", {}))
    if metrics.get("cv_rmse") is not None:
        table.append(("cross-validation", "all rows", f"{metrics['cv_rmse']:.4f}", "|e| (weighted)"))
    if "validation" in metrics:
        table += _metrics_rows("hold-out", metrics["validation"])
    click.echo("\n" + format_table(table, ("set", "quantity", "RMSE", "unit")))
