"""``aiida-irspec cluster``: an AiiDA Computer for a cluster (or localhost) and the codes a campaign needs on it.

``setup`` creates the Computer (SSH transport + SLURM by default), configures it for the current AiiDA user,
creates the codes ``tblite@LABEL`` and ``irspec@LABEL`` (both the remote ``aiida-irspec`` executable) and,
given a VASP executable, ``vasp@LABEL``; then it checks the computer: connection, working directory,
executables, scheduler. A campaign spec with ``codes: {computer: LABEL, engine: tblite, predict: irspec}``
then runs there. Running ``setup`` again with the same settings changes nothing.

Exit codes: 0 success; 2 invalid input or a Computer / Code of that label with other settings;
3 no usable AiiDA profile; 5 the check of the computer failed (the message says what).
"""

import click

from aiida_irspec.cli.groups import AiidaGroup
from aiida_irspec.cli.utils import echo_error_and_exit, format_table, load_profile_or_exit, user_errors

#: code label -> (default CalcJob plugin, what it is)
CODES = {"tblite": ("irspec.tblite.md", "tblite engine jobs (`aiida-irspec engine`)"),
         "irspec": ("irspec.predict_pdot", "dP/dt predictions (`aiida-irspec pdot`)"),
         "vasp": ("vasp.vasp", "VASP")}


@click.group("cluster", cls=AiidaGroup)
def cluster():
    """Set up an AiiDA Computer (SSH + SLURM, or localhost) with the codes of a campaign."""


@cluster.command("setup")
@click.argument("label")
@click.option("--hostname", default="localhost", show_default=True, help="Host name for the transport.")
@click.option("--transport", type=click.Choice(["core.ssh", "core.local"]), default="core.ssh", show_default=True)
@click.option("--scheduler", type=click.Choice(["core.slurm", "core.direct"]), default="core.slurm",
              show_default=True)
@click.option("--username", help="SSH login name (default: the SSH config's or the local user's).")
@click.option("--port", type=int, help="SSH port (default: the SSH config's or 22).")
@click.option("--key-filename", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
              help="Private SSH key (default: the SSH config's or the keys in ~/.ssh).")
@click.option("--workdir", help="Remote working directory of the jobs ({username} is replaced); needed to create "
                                 "the Computer.")
@click.option("--irspec-executable", required=True,
              help="Absolute path of `aiida-irspec` on the computer (where aiida-irspec is installed there).")
@click.option("--vasp-executable", help="Absolute path of VASP on the computer: also creates the code vasp@LABEL.")
@click.option("--prepend-text", default="", help="Shell lines at the top of every job script (e.g. module load).")
@click.option("--mpirun-command", default="mpirun -np {tot_num_mpiprocs}", show_default=True,
              help="MPI launcher of parallel jobs (VASP); e.g. 'srun -n {tot_num_mpiprocs}'.")
@click.option("--mpiprocs-per-machine", type=click.IntRange(min=1),
              help="Default MPI processes per machine of the computer.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Shortest time between two scheduler queries (s).")
@click.option("--safe-interval", type=click.FloatRange(min=0),
              help="Shortest time between two SSH connections (s; default: AiiDA's).")
@click.option("--check/--no-check", default=True, show_default=True, help="Check the computer after setting it up.")
@user_errors
def setup(label, hostname, transport, scheduler, username, port, key_filename, workdir, irspec_executable,
          vasp_executable, prepend_text, mpirun_command, mpiprocs_per_machine, poll_interval, safe_interval, check):
    """Create (or find) the Computer LABEL and its codes tblite, irspec [and vasp]; check that it works."""
    load_profile_or_exit()
    if transport == "core.local" and any(v is not None for v in (username, port, key_filename)):
        echo_error_and_exit("--username, --port and --key-filename are for --transport core.ssh")
    computer, state = _computer(label, hostname, transport, scheduler, workdir, prepend_text, mpirun_command,
                                mpiprocs_per_machine, poll_interval)
    auth = {} if transport == "core.local" else {
        key: value for key, value in {"username": username, "port": port, "key_filename": key_filename,
                                      "look_for_keys": key_filename is None, "load_system_host_keys": True,
                                      "key_policy": "RejectPolicy"}.items() if value is not None}
    if safe_interval is not None:
        auth["safe_interval"] = safe_interval
    computer.configure(**auth)
    rows = [(label, "computer", f"{transport} + {scheduler} on {hostname}", state)]
    executables = {"tblite": irspec_executable, "irspec": irspec_executable}
    if vasp_executable:
        executables["vasp"] = vasp_executable
    for name, executable in executables.items():
        rows.append((f"{name}@{label}", "code", f"{executable} ({CODES[name][1]})", _code(computer, name, executable)))
    click.echo(format_table(rows, ("label", "kind", "what", "state")))
    if check:
        problems = check_computer(computer, sorted(set(executables.values())))
        if problems:
            echo_error_and_exit(f"computer {label!r} does not work yet:\n  " + "\n  ".join(problems), 5)
        click.echo(f"Checked {label}: connection, working directory, executables and scheduler work.")
    click.echo(f"Point a campaign at it with `codes: {{computer: {label}, engine: tblite, predict: irspec}}` "
               f"(VASP: `engine: vasp`).")


def _computer(label, hostname, transport, scheduler, workdir, prepend_text, mpirun_command, mpiprocs, poll_interval):
    """(Computer, what was done); exits when a Computer of that label has another host, transport or scheduler.
    An existing Computer keeps its working directory and prepend text; its poll interval is set."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    wanted = {"hostname": hostname, "transport_type": transport, "scheduler_type": scheduler}
    try:
        computer = orm.Computer.collection.get(label=label)
    except NotExistent:
        if workdir is None:
            echo_error_and_exit(f"--workdir is needed to create the computer {label!r}")
        computer = orm.Computer(label=label, description=f"aiida-irspec cluster setup ({scheduler} over {transport})",
                                workdir=workdir, **wanted).store()
        computer.set_prepend_text(prepend_text)
        computer.set_mpirun_command(mpirun_command.split())
        computer.set_default_mpiprocs_per_machine(mpiprocs)
        computer.set_minimum_job_poll_interval(poll_interval)
        return computer, "created"
    found = {"hostname": computer.hostname, "transport_type": computer.transport_type,
             "scheduler_type": computer.scheduler_type}
    differ = [f"{key} {found[key]!r} (asked: {wanted[key]!r})" for key in wanted if found[key] != wanted[key]]
    if differ:
        echo_error_and_exit(f"computer {label!r} exists with other settings: {', '.join(differ)}; choose another "
                            f"label or remove it (`verdi computer delete {label}`)")
    computer.set_minimum_job_poll_interval(poll_interval)
    kept = computer.get_workdir()
    return computer, "exists" if kept == workdir else f"exists (keeps workdir {kept})"


def find_or_create_code(computer, name, executable, description=None):
    """The InstalledCode ``name@computer`` (a key of :data:`CODES`), created with ``executable`` and the CalcJob
    plugin of ``CODES`` when it does not exist: (code, created)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{name}@{computer.label}"), False
    except NotExistent:
        code = orm.InstalledCode(computer=computer, filepath_executable=executable, label=name,
                                 default_calc_job_plugin=CODES[name][0], description=description or CODES[name][1])
        return code.store(), True


def _code(computer, name, executable):
    """Create the code ``name@computer`` of ``executable``: 'created' or 'exists'; exits when it exists with
    another executable."""
    code, created = find_or_create_code(computer, name, executable)
    if created:
        return "created"
    if str(code.filepath_executable) != executable:
        echo_error_and_exit(f"code {name}@{computer.label} exists with the executable {code.filepath_executable} "
                            f"(asked: {executable}); remove it first (`verdi code delete {name}@{computer.label}`)")
    return "exists"


def check_computer(computer, executables):
    """What does not work on ``computer`` (empty when all is well): the connection, the working directory,
    the ``executables`` (absolute paths on the computer) and a query of the scheduler's queue."""
    from aiida import orm

    user = orm.User.collection.get_default()
    try:
        transport = computer.get_authinfo(user).get_transport()
        with transport:
            workdir = computer.get_workdir().format(username=transport.whoami())
            problems = []
            try:
                transport.makedirs(workdir, ignore_existing=True)
            except OSError as error:
                problems.append(f"cannot create the working directory {workdir}: {error}")
            problems += [f"no executable {path} on {computer.label}" for path in executables
                         if not transport.isfile(path)]
            scheduler = computer.get_scheduler()
            scheduler.set_transport(transport)
            try:
                scheduler.get_jobs(user=transport.whoami(), as_dict=True)
            except Exception as error:  # noqa: BLE001 - schedulers raise many kinds; the message is what counts
                problems.append(f"the scheduler {computer.scheduler_type} does not answer: {error}")
            return problems
    except Exception as error:  # noqa: BLE001 - paramiko and the transports raise many kinds
        return [f"cannot connect ({computer.transport_type} to {computer.hostname}): {type(error).__name__}: {error}"]
