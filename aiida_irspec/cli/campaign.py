"""``aiida-irspec campaign``: validate, submit or run a campaign spec; its status and report.

Exit codes: 0 success; 2 invalid spec or input (the message names the key and what is allowed);
3 no usable AiiDA profile; 4 the campaign run in the foreground did not finish successfully; 5 ``recover`` on a
profile without a broker (it has no daemon).
"""

import click

from aiida_irspec.cli.utils import echo_error_and_exit, format_table, load_profile_or_exit, user_errors


@click.group("campaign")
def campaign():
    """IR-spectrum campaigns: sampling MD, active learning, spectrum. A campaign FILE is a YAML file of overrides
    on the campaign protocol plus its codes and structure, or the name of a packaged one (`aiida-irspec campaign
    list`); see docs/campaign.md."""


def _profile_option(function):
    return click.option("-p", "--profile", help="AiiDA profile (default: the default profile).")(function)


@campaign.command("list")
def list_packaged():
    """The campaign files shipped with the package (give their name instead of a path)."""
    from aiida_irspec.campaign.spec import packaged_campaign_files, read_campaign_file

    rows = []
    for name, path in packaged_campaign_files().items():
        source = read_campaign_file(path)
        rows.append((name, source.protocol or "-", source.description))
    click.echo(format_table(rows, ("name", "protocol", "description")))


@campaign.command("validate")
@click.argument("spec")
@user_errors
def validate(spec):
    """Check the campaign FILE (a path or a packaged name) without a profile: its launch keys, its structure and
    every setting of the protocol it overrides, each problem named by its dotted key."""
    from aiida_irspec.workflows.campaign import CampaignWorkChain, validate_campaign_file

    source, atoms, _ = validate_campaign_file(spec)
    click.echo(f"{source.path}: valid (protocol {source.protocol or CampaignWorkChain.get_default_protocol()}, "
               f"{atoms.get_chemical_formula()}, {len(atoms)} atoms)")


@campaign.command("submit")
@click.argument("spec")
@_profile_option
@user_errors
def submit(spec, profile):
    """Validate the campaign FILE and submit it to the daemon; prints its PK."""
    load_profile_or_exit(profile)
    from aiida.engine import submit as submit_process

    from aiida_irspec.workflows.campaign import builder_from_file

    node = submit_process(builder_from_file(spec))
    click.echo(f"Submitted campaign {node.label!r}: {node.process_label}<{node.pk}>")
    click.echo(f"Follow it with `aiida-irspec campaign status {node.pk}` or `verdi process report {node.pk}`.")


@campaign.command("run")
@click.argument("spec")
@_profile_option
@user_errors
def run(spec, profile):
    """Validate the campaign FILE and run it in the foreground; AiiDA prints the progress reports (log level
    REPORT, `verdi config set logging.aiida_loglevel REPORT`)."""
    load_profile_or_exit(profile)
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.campaign import builder_from_file

    _, node = run_get_node(builder_from_file(spec))
    click.echo(status_text(node))
    if not node.is_finished_ok:
        echo_error_and_exit(f"campaign <{node.pk}> finished with exit status {node.exit_status}: "
                            f"{node.exit_message}", 4)


def _campaign_node(pk):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        node = orm.load_node(pk)
    except NotExistent:
        echo_error_and_exit(f"no node with PK {pk}")
    if node.process_type != "aiida.workflows:irspec.campaign":
        echo_error_and_exit(f"node {pk} is a {node.process_type or type(node).__name__}, not an irspec.campaign")
    return node


def _state(node):
    """finished / failed / excepted / killed / running."""
    if node.is_finished_ok:
        return "finished"
    if node.is_failed:
        return "failed"
    if node.is_excepted or node.is_killed:
        return node.process_state.value
    return "running"


def campaign_status(node):
    """The numbers of ``campaign status``: dict of stage, reference-job and NVE-run counts, model error."""
    from aiida_irspec.workflows.born_charges import BornChargesWorkChain
    from aiida_irspec.workflows.md import MdWorkChain

    from aiida.common.links import LinkType

    stages = {link.link_label for link in node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all()}
    stage = next((name for name in ("spectrum", "learning", "sampling") if name in stages), "starting")
    descendants = node.called_descendants
    references = [d for d in descendants if d.process_class is BornChargesWorkChain]
    counts = {state: sum(_state(d) == state for d in references) for state in ("finished", "failed", "running")}
    nve = [d for d in descendants if d.process_class is MdWorkChain and d.inputs.ensemble.value == "nve"]
    models = [d for d in descendants if d.process_type == "aiida.calculations:irspec.fit_polarization_model"
              and d.is_finished_ok]
    latest = max(models, key=lambda n: n.ctime).outputs.result if models else None
    return {"pk": node.pk, "label": node.label, "state": _state(node), "exit_status": node.exit_status,
            "stage": stage if not node.is_terminated else "done",
            "reference_jobs": counts, "nve_runs": {state: sum(_state(d) == state for d in nve)
                                                   for state in ("finished", "failed", "running")},
            "training_set_size": latest.training_set_size if latest else None,
            "model_error": latest.born_charges_rmse if latest else None}


def status_text(node):
    status = campaign_status(node)
    refs, nve = status["reference_jobs"], status["nve_runs"]
    error = "-" if status["model_error"] is None else f"{status['model_error']:.4f} |e|"
    rows = [("campaign", f"{status['label']} <{status['pk']}>"),
            ("state", status["state"] + (f" (exit {status['exit_status']})" if status["exit_status"] else "")),
            ("stage", status["stage"]),
            ("reference jobs", f"{refs['finished']} done, {refs['failed']} failed, {refs['running']} running"),
            ("model", f"{status['training_set_size'] or '-'} training structures, error {error}"),
            ("NVE runs", f"{nve['finished']} done, {nve['failed']} failed, {nve['running']} running")]
    return format_table(rows, ("", ""))


@campaign.command("recover")
@click.option("--workers", type=int, default=None, help="Daemon workers after the restart (default: as before).")
@_profile_option
@user_errors
def recover(workers, profile):
    """Restart the daemon after its workers crashed (killed, out of memory, a lost node): stop it, start it, and
    send the task of every process that the crash left with a checkpoint but no task (AiiDA's submit stores
    the checkpoint before it sends the task), so that every campaign goes on."""
    loaded = load_profile_or_exit(profile)
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_irspec.workflows.resumable import recover_daemon

    if loaded.process_control_backend is None:
        echo_error_and_exit(f"profile {loaded.name!r} has no broker, hence no daemon to recover: its campaigns run "
                            "in the foreground (`aiida-irspec campaign run`)", 5)
    revived = recover_daemon(get_daemon_client(), workers)
    click.echo("Daemon restarted; " + (f"sent the missing task of {len(revived)} process(es): {revived}" if revived
                                       else "every active process with a checkpoint had its task."))


@campaign.command("status")
@click.argument("pk", type=int)
@_profile_option
@user_errors
def status(pk, profile):
    """Stage, reference jobs done/failed/running, current model error and NVE runs of campaign PK."""
    load_profile_or_exit(profile)
    click.echo(status_text(_campaign_node(pk)))


@campaign.command("report")
@click.argument("pk", type=int)
@click.option("-o", "--output", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder for the plots and the spectrum CSV.")
@_profile_option
@user_errors
def report(pk, output, profile):
    """The learning history and band table of campaign PK; writes spectrum.png, learning.png, spectrum.csv."""
    load_profile_or_exit(profile)
    import pathlib

    node = _campaign_node(pk)
    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(status_text(node))
    outputs = node.outputs
    learning = outputs.learning if "learning" in outputs else {}
    spectra = outputs.spectrum if "spectrum" in outputs else {}
    if "history" in learning:
        history = learning.history.get_dict()
        rows = [(row["iteration"], row["attempted"], row["failed"], row["training_set_size"],
                 _number(row["holdout_rmse"]), _number(row["uncertainty_rms"]), _number(row["error"]))
                for row in history["rows"]]
        click.echo("\nActive learning (errors of Z in |e|): " + str(history["stop_reason"]))
        click.echo(format_table(rows, ("iteration", "reference jobs", "failed", "training", "hold-out RMSE",
                                       "uncertainty", "error")))
        _plot_history(history, folder / "learning.png")
    if "spectrum" in spectra:
        spectrum = spectra.spectrum
        bands = node.inputs.spectrum.analysis.get_dict().get("bands", {})
        spectrum.to_csv(folder / "spectrum.csv", bands=bands or None)
        if bands:
            rows = [(row["name"], f"{row['lo_cm1']:.0f}-{row['hi_cm1']:.0f}",
                     f"{row['integral']:.4g} +- {2 * row['integral_stderr']:.2g}",
                     f"{row['peak_cm1']:.0f} +- {2 * row['peak_stderr']:.0f}") for row in spectrum.band_summary(bands)]
            click.echo(f"\nBands ({spectrum.n_runs} runs; +- 2 standard errors; intensity in "
                       f"{spectrum.base.attributes.get('integrated_unit')}):")
            click.echo(format_table(rows, ("band", "range (cm^-1)", "intensity", "peak (cm^-1)")))
        if bands and "reference_spectrum" in spectra:
            from aiida_irspec.campaign.validation import compare_bands

            rows = [(row["name"], f"{100 * row['inside_band']:.0f}%",
                     f"{row['integral_model']:.4g} / {row['integral_reference']:.4g}",
                     "yes" if row["integral_agrees"] else "no")
                    for row in compare_bands(spectrum.to_averaged(), spectra.reference_spectrum.to_averaged(), bands)]
            click.echo("\nModel against the engine's own dipoles along the same runs:")
            click.echo(format_table(rows, ("band", "reference inside +-2 stderr", "intensity model / reference",
                                           "intensities agree (2 sigma)")))
        from aiida_irspec.spectra.plotting import plot_spectra

        curves = [spectrum.to_averaged()]
        labels = ["learned model"]
        if "reference_spectrum" in spectra:
            curves.append(spectra.reference_spectrum.to_averaged())
            labels.append("engine dipoles (reference)")
        plot_spectra(curves, labels=labels, path=folder / "spectrum.png", title=node.label)
    click.echo(f"\nWrote {', '.join(sorted(p.name for p in folder.iterdir() if p.suffix in ('.png', '.csv')))} "
               f"in {folder}")


def _number(value):
    return "-" if value is None else f"{value:.4f}"


def _plot_history(history, path):
    """Error against the number of reference jobs (hold-out RMSE, uncertainty, target)."""
    from matplotlib.figure import Figure

    rows = history["rows"]
    figure = Figure(figsize=(5, 3.4), layout="constrained")
    ax = figure.add_subplot()
    attempted = [row["attempted"] for row in rows]
    for key, label in (("holdout_rmse", "hold-out RMSE of Z"), ("uncertainty_rms", "RMS uncertainty on the pool")):
        values = [row[key] for row in rows]
        if any(v is not None for v in values):
            ax.plot(attempted, [float("nan") if v is None else v for v in values], "o-", label=label)
    ax.axhline(history["target_error"], color="k", ls="--", lw=1, label="target")
    ax.set_xlabel("reference calculations")
    ax.set_ylabel("error (|e|)")
    ax.legend()
    figure.savefig(path, dpi=110)
