"""``aiida-irspec demo``: from nothing to an IR spectrum on the embedded engine, in one command.

It sets up what the campaign needs (a profile, the ``localhost`` computer, the codes ``tblite@localhost``
and ``irspec@localhost``), reusing whatever exists, runs the water-dimer tblite campaign in the
foreground with caching on for the plugin's calculations (so a second run reuses every job) and writes the
results to a folder.

Exit codes: 0 success; 2 invalid spec; 3 no usable profile; 4 the campaign did not finish successfully.
"""

import contextlib
import pathlib
import shutil
import sys

import click

from aiida_irspec.cli.utils import echo_error_and_exit, user_errors

DEMO_PROFILE = "irspec-demo"
DEMO_EMAIL = "demo@aiida-irspec.local"


#: The packaged campaign the demo runs (aiida_irspec/campaign/specs/).
DEMO_CAMPAIGN = "water_dimer_tblite"


def irspec_executable():
    """The ``aiida-irspec`` executable next to the running Python (the venv's bin), else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / "aiida-irspec"
    if beside.is_file():
        return str(beside)
    found = shutil.which("aiida-irspec")
    if found is None:
        echo_error_and_exit("no `aiida-irspec` executable next to the Python interpreter or on PATH", 3)
    return found


def setup_profile(name=None):
    """Load profile ``name``; without a name the default profile if it loads, else the SQLite, broker-less
    profile ``irspec-demo`` (created on first use, with caching enabled for the plugin's calculations,
    ``caching.enabled_for``; default if there was none).
    Returns (profile, created)."""
    from aiida import load_profile
    from aiida.common import exceptions
    from aiida.manage import get_manager
    from aiida.manage.configuration import create_profile, get_config

    from aiida_irspec.calculations.versioned import CACHED_PROCESSES

    config = get_config(create=True)
    if name is not None:
        if name not in config.profile_names:
            echo_error_and_exit(f"no AiiDA profile {name!r}; known: {', '.join(config.profile_names) or 'none'}", 3)
        return load_profile(name, allow_switch=True), False
    if config.default_profile_name and config.default_profile_name != DEMO_PROFILE:
        try:
            profile = load_profile(config.default_profile_name, allow_switch=True)
            get_manager().get_profile_storage()  # reachable, migrated
            return profile, False
        except (exceptions.AiidaException, OSError) as error:  # misconfigured, unreachable, unmigrated, missing
            click.echo(f"The default profile {config.default_profile_name!r} does not load ({error}); "
                       f"using {DEMO_PROFILE!r}.")
    created = DEMO_PROFILE not in config.profile_names
    if created:
        profile = create_profile(config, name=DEMO_PROFILE, email=DEMO_EMAIL, storage_backend="core.sqlite_dos",
                                 storage_config={}, broker_backend=None, broker_config=None)
        config.set_option("caching.enabled_for", [CACHED_PROCESSES], scope=profile.name)
        config.set_option("runner.poll.interval", 1, scope=profile.name)
        if not config.default_profile_name:
            config.set_default_profile(profile.name)
        config.store()
        click.echo(f"Created the AiiDA profile {DEMO_PROFILE!r} (SQLite, no broker, caching on for "
                   f"{CACHED_PROCESSES}) in {config.dirpath}")
    return load_profile(DEMO_PROFILE, allow_switch=True), created


def setup_computer(label="localhost"):
    """The computer ``label`` (core.local, core.direct), created and configured for the current user if
    missing; its work directory is ``<AiiDA config folder>/scratch/<profile>``. Returns (Computer, created)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config

    created = False
    try:
        computer = orm.load_computer(label)
    except NotExistent:
        profile = get_manager().get_profile()
        workdir = pathlib.Path(get_config().dirpath) / "scratch" / profile.name
        computer = orm.Computer(label=label, hostname="localhost", description="created by `aiida-irspec demo`",
                                transport_type="core.local", scheduler_type="core.direct",
                                workdir=str(workdir)).store()
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
        created = True
    if not computer.is_configured:
        computer.configure(safe_interval=0.1)
    return computer, created


def setup_codes(computer, executable):
    """The InstalledCodes ``tblite`` and ``irspec`` on ``computer`` running ``executable``, created if missing.
    Returns {label: (code, created)}."""
    from aiida_irspec.cli.cluster import find_or_create_code

    return {label: find_or_create_code(computer, label, executable, "`aiida-irspec` (created by `aiida-irspec demo`)")
            for label in ("tblite", "irspec")}


@contextlib.contextmanager
def ignore_molecule_cell_warning():
    """Silence featomic's warning that the (ignored) cell of a non-periodic structure is set to zero."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="periodic boundary conditions are disabled")
        yield


@contextlib.contextmanager
def terse_reports():
    """AiiDA's process reports on the terminal as ``HH:MM:SS [pk|Process|step]: message`` (and no featomic
    warning about the cell of molecules)."""
    import logging

    handlers = [h for h in logging.getLogger("aiida").handlers if isinstance(h, logging.StreamHandler)]
    formatters = [h.formatter for h in handlers]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    try:
        with ignore_molecule_cell_warning():
            yield
    finally:
        for handler, formatter in zip(handlers, formatters):
            handler.setFormatter(formatter)


def run_campaign(spec_path):
    """Run the campaign of ``spec_path`` in the foreground with caching on for the plugin's calculations (on
    any profile); returns its node."""
    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching

    from aiida_irspec.calculations.versioned import CACHED_PROCESSES
    from aiida_irspec.workflows.campaign import builder_from_file

    builder = builder_from_file(spec_path)
    with enable_caching(identifier=CACHED_PROCESSES), terse_reports():
        _, node = run_get_node(builder)
    return node


def write_provenance_graph(node, folder):
    """The provenance graph of ``node``: the whole graph (ancestors and descendants, as `verdi node graph
    generate`) as graphviz source ``provenance_<pk>.dot``, and, when graphviz's ``dot`` is installed, an overview
    (the node's inputs, outputs and the processes it called) as ``provenance_<pk>.png``. Returns the paths."""
    from aiida.tools.visualization import Graph

    full = Graph(node_id_type="pk")
    full.recurse_ancestors(node, annotate_links="both")
    full.recurse_descendants(node, annotate_links="both")
    paths = [folder / f"provenance_{node.pk}.dot"]
    full.graphviz.save(paths[0])
    if shutil.which("dot"):
        overview = Graph(node_id_type="pk")
        overview.recurse_ancestors(node, depth=1, annotate_links="both")
        overview.recurse_descendants(node, depth=1, annotate_links="both")
        paths.append(pathlib.Path(overview.graphviz.render(outfile=folder / f"provenance_{node.pk}.png",
                                                           format="png", cleanup=True)))
    return paths


def plot_spectrum_panels(node, path, zoom=(1300.0, 4000.0)):
    """The campaign's spectrum with its +-2 stderr band (and the engine's reference spectrum when there is one):
    the whole range, and the intramolecular region ``zoom`` (cm^-1) where the low-frequency modes do not
    dominate the scale."""
    from matplotlib.figure import Figure

    from aiida_irspec.spectra.plotting import default_xlim

    spectra = node.outputs.spectrum
    spectrum = spectra.spectrum
    reference = spectra.reference_spectrum if "reference_spectrum" in spectra else None
    figure = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, xlim in zip(axes, (default_xlim([spectrum.to_averaged()]), zoom)):
        if reference is not None:
            reference.plot(ax=ax, label="engine dipoles (reference)", band=None, xlim=xlim, color="k")
            ax.lines[-1].set(ls="--", lw=0.8)
        spectrum.plot(ax=ax, label="learned model", xlim=xlim, color="tab:blue")
    axes[0].legend(fontsize=8)
    axes[1].set_title(f"{zoom[0]:.0f}-{zoom[1]:.0f} cm$^{{-1}}$", fontsize=9)
    figure.suptitle(f"{node.label}: {spectrum.n_runs} runs, band = mean -+ 2 standard errors",
                    fontsize=10)
    figure.savefig(path, dpi=100)


def write_results(node, folder, profile_name):
    """Everything a newcomer looks at, in ``folder``: the campaign report (report.md; spectrum.png with the
    band and the engine's reference, spectrum.csv, learning.png), spectrum_panels.png, the model's parity plot
    and the provenance graph. Returns (paths written, report text)."""
    import io

    from aiida_irspec.cli.campaign import report
    from aiida_irspec.data.parity import model_parity, plot_parity

    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report.callback(pk=node.pk, output=str(folder), profile=profile_name)
    report_path = folder / "report.md"
    report_path.write_text(f"# Campaign {node.label} <{node.pk}>\n\n```text\n{text.getvalue().strip()}\n```\n")
    paths = [report_path] + sorted(folder / name for name in ("spectrum.png", "spectrum.csv", "learning.png")
                                   if (folder / name).exists())
    if "spectrum" in node.outputs and "spectrum" in node.outputs.spectrum:
        paths.append(folder / "spectrum_panels.png")
        plot_spectrum_panels(node, paths[-1])
    if "learning" in node.outputs and "model" in node.outputs.learning:
        paths.append(folder / "parity.png")
        with ignore_molecule_cell_warning():
            plot_parity(model_parity(node.outputs.learning.model), path=paths[-1],
                        title=f"{node.label}: Born charges, model against reference")
    paths.extend(write_provenance_graph(node, folder))
    return paths, text.getvalue()


@click.command("demo")
@click.option("-p", "--profile", help="AiiDA profile (default: the default profile, else a new 'irspec-demo').")
@click.option("--spec", default=DEMO_CAMPAIGN, show_default=True,
              help="Campaign file: a path, or the name of a packaged campaign (`aiida-irspec campaign list`).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="irspec-demo", show_default=True,
              help="Folder for the spectrum, plots, report and provenance graph.")
@user_errors
def demo(profile, spec, output):
    """Set up AiiDA if needed and run the water-dimer IR campaign on tblite (about 5 min on 2 cores; a second
    run takes every job from the cache, about 80 s): profile, computer `localhost`, codes `tblite@localhost`
    and `irspec@localhost`; results in OUTPUT."""
    import time

    from aiida_irspec.campaign.spec import find_campaign_file

    spec = find_campaign_file(spec)
    loaded, _ = setup_profile(profile)
    computer, created = setup_computer()
    click.echo(f"profile {loaded.name!r}; computer {computer.label!r} ({'created' if created else 'reused'})")
    for label, (code, created) in setup_codes(computer, irspec_executable()).items():
        click.echo(f"code {code.full_label} -> {code.filepath_executable} ({'created' if created else 'reused'})")
    click.echo(f"Running the campaign of {spec} in the foreground (progress reports follow) ...")
    start = time.monotonic()
    node = run_campaign(spec)
    click.echo(f"Campaign <{node.pk}> ended after {time.monotonic() - start:.0f} s.")
    if not node.is_finished_ok:
        echo_error_and_exit(f"campaign <{node.pk}> finished with exit status {node.exit_status}: {node.exit_message}"
                            f"\nInspect it with `verdi -p {loaded.name} process report {node.pk}`.", 4)
    paths, text = write_results(node, pathlib.Path(output), loaded.name)
    click.echo(text.rstrip())
    click.echo("\nResults:")
    for path in paths:
        click.echo(f"  {path}")
    graph = next(path for path in paths if path.suffix == ".dot")
    missing = "" if shutil.which("dot") else "graphviz's `dot` is not installed, so no PNG overview; "
    click.echo(f"  ({missing}{graph.name} is the whole provenance graph, slow to lay out: "
               f"`dot -Tsvg {graph} -o {graph.with_suffix('.svg')}`)")
    click.echo(f"\nCampaign PK {node.pk} in profile {loaded.name!r}. Inspect it with:\n"
               f"  aiida-irspec campaign status {node.pk} -p {loaded.name}\n"
               f"  aiida-irspec campaign report {node.pk} -p {loaded.name}\n"
               f"  verdi -p {loaded.name} process show {node.pk}\n  verdi -p {loaded.name} process report {node.pk}")
