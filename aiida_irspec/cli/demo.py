"""``aiida-irspec demo``: from nothing to an IR spectrum on the embedded engine, in one command.

It sets up what the campaign needs (a profile, the ``localhost`` computer, the codes ``tblite@localhost``
and ``irspec@localhost``), reusing whatever exists, runs the water-dimer tblite campaign in the
foreground with caching on for the plugin's calculations (so a second run reuses every job) and writes the
results to a folder.

Exit codes: 0 success; 2 invalid spec; 3 no usable profile; 4 the campaign did not finish successfully (the
message says which step failed and why); 14 the output folder cannot be written (checked before the campaign);
130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM: the campaign and its jobs are killed.
"""

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


def write_results(node, folder):
    """Everything a newcomer looks at, in ``folder``: the campaign report of ``aiida-irspec campaign report``
    (report.md, spectrum.png, spectrum.csv, learning.png, parity.png, the provenance graph). Returns (paths
    written, report text)."""
    from aiida_irspec.cli.campaign import write_report

    return write_report(node, folder)


@click.command("demo")
@click.option("--spec", default=DEMO_CAMPAIGN, show_default=True,
              help="Campaign file: a path, or the name of a packaged campaign (`aiida-irspec campaign list`).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=pathlib.Path), default="irspec-demo",
              show_default=True, help="Folder for the report: spectrum, plots, tables and provenance graph.")
@user_errors
def demo(spec, output):
    """Set up AiiDA if needed and run the water-dimer IR campaign on tblite (about 4 min on 2 cores; a second
    run takes every job from the cache, under 2 min): profile (the global `-p`, else the default profile, else a
    new 'irspec-demo'), computer `localhost`, codes `tblite@localhost` and `irspec@localhost`; the report in
    OUTPUT. Ctrl-C stops the campaign and its jobs (exit 130)."""
    import time

    from aiida.manage.caching import enable_caching

    from aiida_irspec.calculations.versioned import CACHED_PROCESSES
    from aiida_irspec.campaign.spec import find_campaign_file
    from aiida_irspec.files import check_output_folder
    from aiida_irspec.cli.campaign import REPORT_FILES, end_with_state, run_in_foreground
    from aiida_irspec.cli.utils import global_option
    from aiida_irspec.workflows.campaign import builder_from_file

    spec = find_campaign_file(spec)
    loaded, _ = setup_profile(global_option("profile_name"))
    computer, created = setup_computer()
    click.echo(f"profile {loaded.name!r}; computer {computer.label!r} ({'created' if created else 'reused'})")
    for label, (code, created) in setup_codes(computer, irspec_executable()).items():
        click.echo(f"code {code.full_label} -> {code.filepath_executable} ({'created' if created else 'reused'})")
    builder = builder_from_file(spec)
    check_output_folder(output, REPORT_FILES, option="--output")  # before the campaign, not after it
    click.echo(f"Running the campaign of {spec} in the foreground ...")
    start = time.monotonic()
    with enable_caching(identifier=CACHED_PROCESSES):
        node, signal_name = run_in_foreground(builder)
    click.echo(f"Campaign <{node.pk}> ended after {time.monotonic() - start:.0f} s.")
    inspect = f"Inspect it with `aiida-irspec -p {loaded.name} campaign status {node.pk}`."
    end_with_state(node, signal_name, hint=inspect)
    paths, text = write_results(node, output)
    click.echo(text.rstrip())
    click.echo("\nResults:")
    for path in paths:
        click.echo(f"  {path}")
    graph = next(path for path in paths if path.suffix == ".dot")
    missing = "" if shutil.which("dot") else "graphviz's `dot` is not installed, so no PNG overview; "
    click.echo(f"  ({missing}{graph.name} is the whole provenance graph, slow to lay out: "
               f"`dot -Tsvg {graph} -o {graph.with_suffix('.svg')}`)")
    click.echo(f"\nCampaign PK {node.pk} in profile {loaded.name!r}. Inspect it with:\n"
               f"  aiida-irspec -p {loaded.name} campaign status {node.pk}\n"
               f"  aiida-irspec -p {loaded.name} campaign report {node.pk} -o report\n"
               f"  verdi -p {loaded.name} process show {node.pk}\n  verdi -p {loaded.name} process report {node.pk}")
