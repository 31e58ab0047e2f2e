"""``aiida-irspec campaign``: validate, submit or run a campaign file; its status and report.

A campaign is named by its PK, UUID or label (aiida-core's process argument: ``campaign status 5``,
``campaign status 710a2c00``, ``campaign status water-dimer-tblite``); the profile is the global
``aiida-irspec -p PROFILE``.

Exit codes: 0 success (``status`` of a campaign that is running or finished OK); 2 invalid file or input (the
message names the key and what is allowed), or a node that is not a campaign; 3 no usable AiiDA profile; 4 the
campaign ended with an error: ``run`` of a campaign that failed, ``status``/``report`` of a failed, excepted or
killed campaign (the message says which step failed, its exit code and its last report line); 5 ``submit`` or
``recover`` on a profile without a broker (it has no daemon: run the campaign in the foreground); 14 an output
of ``report`` cannot be written (checked before any work); 130 / 143 ``run`` stopped by SIGINT (Ctrl-C) /
SIGTERM: the campaign and every job under it are killed (``status`` then says "interrupted").
"""

import contextlib
import dataclasses
import logging
import pathlib
import shutil

import click
from aiida.cmdline.params import types

from aiida_irspec.cli.groups import AiidaGroup
from aiida_irspec.cli.utils import echo_error_and_exit, format_table, load_profile_or_exit, user_errors

CAMPAIGN_TYPE = "aiida.workflows:irspec.campaign"
STAGES = ("sampling", "learning", "spectrum")
#: Exit code of a campaign that did not finish OK, and of a command that needs a broker on a profile without one.
EXIT_CAMPAIGN_FAILED, EXIT_NO_BROKER = 4, 5
#: The files a campaign report writes, when the campaign has every output (and provenance_PK.dot).
REPORT_FILES = ("report.md", "learning.png", "spectrum.csv", "spectrum.png", "parity.png")
#: The sub-commands that work on the profile (loaded before their arguments are read).
PROFILE_COMMANDS = ("submit", "run", "status", "report", "recover")


class CampaignParamType(types.WorkflowParamType):
    """An ``irspec.campaign`` process by PK, UUID or label (aiida-core's WorkflowParamType, checked for its type)."""

    name = "CAMPAIGN"

    def convert(self, value, param, ctx):
        node = super().convert(value, param, ctx)
        if node.process_type != CAMPAIGN_TYPE:
            self.fail(f"{node.process_label or type(node).__name__}<{node.pk}> is not an irspec.campaign", param, ctx)
        return node


def campaign_argument(function):
    return click.argument("campaign", type=CampaignParamType())(function)


@click.group("campaign", cls=AiidaGroup)
@click.pass_context
def campaign(ctx):
    """IR-spectrum campaigns: sampling MD, active learning, spectrum. A campaign FILE is a YAML file of overrides
    on the campaign protocol plus its codes and structure, or the name of a packaged one (`aiida-irspec campaign
    list`); see docs/campaign.md. A CAMPAIGN is its PK, UUID or label; the profile is `aiida-irspec -p PROFILE`."""
    if ctx.invoked_subcommand in PROFILE_COMMANDS:
        load_profile_or_exit()


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
@user_errors
def submit(spec):
    """Validate the campaign FILE and submit it to the daemon; prints its PK. Needs a profile with a broker
    (RabbitMQ or ZeroMQ) and a running daemon (`verdi daemon start`); otherwise run it with `campaign run`."""
    from aiida.engine import submit as submit_process
    from aiida.manage import get_manager

    from aiida_irspec.workflows.campaign import builder_from_file

    profile = get_manager().get_profile()
    builder = builder_from_file(spec)  # the file is checked before anything is stored
    if profile.process_control_backend is None:
        echo_error_and_exit(f"profile {profile.name!r} has no broker, so no daemon can run a submitted campaign: run "
                            f"it in the foreground with `aiida-irspec -p {profile.name} campaign run {spec}`, or give "
                            f"the profile a broker (`verdi profile configure-rabbitmq {profile.name}`, then "
                            f"`verdi -p {profile.name} daemon start`)", EXIT_NO_BROKER)
    quiet = logging.getLogger("aiormq")  # it logs the refused connection itself; the Error line below says it
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        get_manager().get_communicator()  # connect first: a failed submit would leave a campaign node that never runs
    except Exception as error:  # the broker refused the connection (kiwipy, aio-pika, zmq raise their own kinds)
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        echo_error_and_exit(f"cannot reach the broker of profile {profile.name!r} ({message}): start it "
                            f"(RabbitMQ: `systemctl start rabbitmq-server`; `verdi -p {profile.name} status` "
                            f"checks it), or run the campaign in the foreground with `aiida-irspec -p {profile.name} "
                            f"campaign run {spec}`", EXIT_NO_BROKER)
    finally:
        quiet.setLevel(level)
    node = submit_process(builder)
    click.echo(f"Submitted campaign {node.label!r}: {node.process_label}<{node.pk}>")
    click.echo(f"Follow it with `aiida-irspec -p {profile.name} campaign status {node.pk}` or "
               f"`verdi -p {profile.name} process report {node.pk}`.")


@campaign.command("run")
@click.argument("spec")
@user_errors
def run(spec):
    """Validate the campaign FILE and run it in the foreground, with its reports and a progress line (stage, jobs
    done of the planned ones, time left); `aiida-irspec -v info` shows every job's reports. Ctrl-C or SIGTERM
    kills the campaign and every job under it (exit 130 / 143); `campaign status` then says it was interrupted."""
    from aiida_irspec.workflows.campaign import builder_from_file

    node, signal_name = run_in_foreground(builder_from_file(spec))
    click.echo(status_text(node))
    end_with_state(node, signal_name)


def run_in_foreground(builder):
    """Run a campaign builder here with progress and a clean stop on signals; returns (node, signal name or None)."""
    from aiida_irspec.cli.foreground import ForegroundRun, progress_for_cli

    with progress_for_cli() as progress, ignore_molecule_cell_warning():
        foreground = ForegroundRun(builder, progress=progress, counts=progress_counts())
        node = foreground.run()
    return node, foreground.signal_name


def end_with_state(node, signal_name=None, hint=None):
    """Exit 130 / 143 when a signal stopped the run, 4 (with the step that failed and why) when the campaign ended
    without finishing OK; return otherwise (finished OK, or still running)."""
    from aiida_irspec.cli.foreground import exit_code_of_signal

    if signal_name is not None:
        echo_error_and_exit(f"campaign <{node.pk}> interrupted by {signal_name}: it and every job under it were "
                            "killed; finished jobs keep their results (and serve a rerun from the cache)",
                            exit_code_of_signal(signal_name))
    if node.is_terminated and not node.is_finished_ok:
        echo_error_and_exit(failure_line(node) + (f"\n{hint}" if hint else ""), EXIT_CAMPAIGN_FAILED)


# ---------------------------------------------------------------------------------------------- status
def _state(process_state, exit_status):
    """finished / failed / excepted / killed / running, from a process state value and an exit status."""
    if process_state == "finished":
        return "finished" if exit_status == 0 else "failed"
    if process_state in ("excepted", "killed"):
        return process_state
    return "running"


PROCESS_FIELDS = ("id", "attributes.process_state", "attributes.exit_status", "attributes.exit_message",
                  "attributes.process_label", "attributes.process_status")


def _process(values, link=None):
    pk, process_state, exit_status, exit_message, label, status = values
    return {"pk": pk, "state": _state(process_state, exit_status), "exit_status": exit_status,
            "exit_message": exit_message, "process_label": label, "process_status": status, "link": link}


def call_tree(node):
    """The campaign's stages and the processes they called, in one QueryBuilder query (the call tree two levels
    deep): returns (stages: call link label -> process dict, jobs: list of process dicts with ``stage``,
    ``process_type`` and ``ctime``). Process dicts: pk, state, exit_status, exit_message, process_label,
    process_status, link (the call link label). A stage that has not called anything yet is not listed."""
    from aiida import orm

    query = orm.QueryBuilder()
    query.append(orm.WorkflowNode, filters={"id": node.pk}, tag="campaign")
    query.append(orm.ProcessNode, with_incoming="campaign", tag="stage", project=list(PROCESS_FIELDS),
                 edge_project="label")
    query.append(orm.ProcessNode, with_incoming="stage", tag="job", edge_project="label",
                 project=[*PROCESS_FIELDS, "process_type", "ctime"])
    stages, jobs = {}, []
    for row in query.dict():
        stage_label = row["campaign--stage"]["label"]
        stages[stage_label] = _process([row["stage"][field] for field in PROCESS_FIELDS], stage_label)
        job = _process([row["job"][field] for field in PROCESS_FIELDS], row["stage--job"]["label"])
        job.update(stage=stage_label, process_type=row["job"]["process_type"], ctime=row["job"]["ctime"])
        jobs.append(job)
    return stages, jobs


def latest_model(node):
    """(training_set_size, born_charges_rmse |e|) of the last model the campaign's fits made, or (None, None)."""
    from aiida import orm

    from aiida_irspec.data.polarization_model import PolarizationModelData

    query = orm.QueryBuilder()
    query.append(orm.WorkflowNode, filters={"id": node.pk}, tag="campaign")
    query.append(orm.WorkflowNode, with_incoming="campaign", edge_filters={"label": "learning"}, tag="learning")
    query.append(orm.CalcFunctionNode, with_incoming="learning", tag="fit")
    query.append(PolarizationModelData, with_incoming="fit", tag="model",
                 project=["attributes.training_set_size", "attributes.born_charges_rmse"])
    row = query.order_by({"model": {"ctime": "desc"}}).first()
    return tuple(row) if row else (None, None)


def campaign_plan(node):
    """What the campaign's inputs plan: {"budget": reference jobs at most, "runs": NVE runs, "target_error": |e|}.
    The stored settings are complete (the builder fills them in); the settings classes give a missing value only
    (importing them loads the model code, about 1 s)."""
    inputs = node.inputs
    selection, runs = inputs.learning.selection.get_dict(), inputs.spectrum.runs.get_dict()
    if not {"budget", "target_error"} <= set(selection) or "number" not in runs:
        from aiida_irspec.campaign.settings import RunSettings, SelectionSettings

        selection = dataclasses.asdict(SelectionSettings.from_dict(selection))
        runs = dataclasses.asdict(RunSettings.from_dict(runs))
    return {"budget": selection["budget"], "target_error": selection["target_error"], "runs": runs["number"]}


def _count(processes):
    """Processes per state: finished (OK), failed (an exit code, or excepted), killed, running."""
    return {"finished": sum(p["state"] == "finished" for p in processes),
            "failed": sum(p["state"] in ("failed", "excepted") for p in processes),
            "killed": sum(p["state"] == "killed" for p in processes),
            "running": sum(p["state"] == "running" for p in processes)}


def campaign_status(node, plan=None):
    """The numbers of ``campaign status``: one query of the call tree, one of the latest model and, unless
    ``plan`` is given, the campaign's inputs (no walk through the call tree in Python):
    a dict of pk, uuid, label, state, exit status and message, process status, stage, ``reference_jobs``,
    ``nve_runs`` and ``predictions`` (counts per state), ``runs`` (NVE run and prediction of each snapshot),
    ``training_set_size`` and ``model_error`` (|e|) of the latest model, ``plan`` (:func:`campaign_plan`),
    ``stages`` and ``jobs`` (:func:`call_tree`)."""
    stages, jobs = call_tree(node)
    plan = plan or campaign_plan(node)
    references = [j for j in jobs if j["stage"] == "learning"
                  and j["process_type"] == "aiida.workflows:irspec.born_charges"]
    nve = [j for j in jobs if j["stage"] == "spectrum" and (j["link"] or "").startswith("nve_run_")]
    predictions = [j for j in jobs if j["stage"] == "spectrum" and (j["link"] or "").startswith("pdot_run_")]
    runs = {}
    for job in nve + predictions:
        runs.setdefault(job["link"].rsplit("_", 1)[1], []).append(job)
    run_states = []
    for chain in runs.values():
        if any(j["state"] not in ("finished", "running") for j in chain):
            run_states.append("failed")
        elif any(j["link"].startswith("pdot_run_") and j["state"] == "finished" for j in chain):
            run_states.append("finished")
        else:
            run_states.append("running")
    latest = latest_model(node)
    stage = next((name for name in reversed(STAGES) if name in stages), "starting")
    state = _state(node.process_state.value if node.process_state else None, node.exit_status)
    return {"pk": node.pk, "uuid": node.uuid, "label": node.label, "state": state, "exit_status": node.exit_status,
            "exit_message": node.exit_message, "process_status": node.process_status, "stage": stage,
            "stage_number": STAGES.index(stage) + 1 if stage in STAGES else 0,
            "reference_jobs": _count(references), "nve_runs": _count(nve), "predictions": _count(predictions),
            "runs": {state: run_states.count(state) for state in ("finished", "failed", "running")},
            "training_set_size": latest[0], "model_error": latest[1], "plan": plan, "stages": stages, "jobs": jobs}


def progress_counts():
    """A function node -> counts for the progress line of ``campaign run`` (the inputs read once)."""
    plans = {}

    def counts(node):
        if node.pk not in plans:
            plans[node.pk] = campaign_plan(node)
        status = campaign_status(node, plans[node.pk])
        refs, runs, plan = status["reference_jobs"], status["runs"], status["plan"]
        sampling = status["stages"].get("sampling")
        sampling_state = sampling["state"] if sampling else "running"
        return {"stage": status["stage"] if status["stage"] in STAGES else "sampling",
                "stage_number": max(status["stage_number"], 1),
                "jobs": {"sampling": ("MD run", int(sampling_state == "finished"),
                                      int(sampling_state not in ("finished", "running")),
                                      int(sampling_state == "running"), 1),
                         "learning": ("reference jobs", refs["finished"], refs["failed"] + refs["killed"],
                                      refs["running"], plan["budget"]),
                         "spectrum": ("NVE runs with dP/dt", runs["finished"], runs["failed"], runs["running"],
                                      plan["runs"])}}

    return counts


def _states(counts):
    killed = f", {counts['killed']} killed" if counts["killed"] else ""
    return f"{counts['finished']} done, {counts['failed']} failed, {counts['running']} running{killed}"


def status_rows(status):
    """(label, value) rows of the status table."""
    refs = status["reference_jobs"]
    error = "-" if status["model_error"] is None else f"{status['model_error']:.4f} |e|"
    state = status["state"] + (f" (exit {status['exit_status']})" if status["exit_status"] else "")
    if status["state"] in ("killed", "excepted") and status["process_status"]:
        state += f": {status['process_status']}"
    rows = [("campaign", f"{status['label']} <{status['pk']}> {status['uuid']}"), ("state", state),
            ("stage", "done" if status["state"] == "finished" else status["stage"]),
            ("reference jobs", f"{_states(refs)} (budget {status['plan']['budget']})"),
            ("model", f"{status['training_set_size'] or '-'} training structures, error {error} (target "
                      f"{status['plan']['target_error']} |e|)"),
            ("NVE runs", f"{_states(status['nve_runs'])} (of {status['plan']['runs']})"),
            ("dP/dt predictions", _states(status["predictions"]))]
    return rows


def _last_line(text):
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _without_traceback(message):
    """A report line that holds a traceback (a process that excepted), as its first part and the exception's line."""
    if "Traceback (most recent call last)" not in message:
        return message
    return f"{message.split('Traceback', 1)[0].strip()} excepted: {_last_line(message)}"


def failure(node, status):
    """What made a campaign fail: {"step": the stage (and process) that failed, "reason": its exit code and message
    or exception, "jobs": failed jobs under it, "reports": its last report lines}; None for a campaign that is
    running or finished OK."""
    from aiida import orm

    if status["state"] in ("finished", "running"):
        return None
    stages = status["stages"]
    failed_stage = next((stages[name] for name in reversed(STAGES) if name in stages
                         and stages[name]["state"] != "finished"), None)
    if status["state"] == "failed":
        reason = f"exit {node.exit_status}: {node.exit_message}"
    elif status["state"] == "excepted":
        reason = f"excepted: {_last_line(node.exception)}"
    else:
        reason = f"killed: {node.process_status or 'no reason recorded'}"
    step = f"stage {status['stage_number']}/3 {status['stage']}"
    if failed_stage is not None:
        step += f" ({failed_stage['process_label']}<{failed_stage['pk']}> {failed_stage['state']}"
        step += f", exit {failed_stage['exit_status']})" if failed_stage["state"] == "failed" else ")"
    failed_jobs = [j for j in status["jobs"] if j["state"] in ("failed", "excepted")
                   or (j["state"] == "killed" and status["state"] != "killed")]
    jobs = []
    for job in failed_jobs:
        what = f"exit {job['exit_status']}: {job['exit_message']}" if job["state"] == "failed" else job["state"]
        if job["state"] == "excepted":
            what += f": {_last_line(orm.load_node(job['pk']).exception)}"
        jobs.append(f"{job['process_label']}<{job['pk']}> ({job['link']}): {what}")
    if failed_stage is not None and failed_stage["state"] == "excepted":
        jobs.insert(0, f"{failed_stage['process_label']}<{failed_stage['pk']}>: excepted: "
                       f"{_last_line(orm.load_node(failed_stage['pk']).exception)}")
    watched = [node.pk] + ([failed_stage["pk"]] if failed_stage else []) + [job["pk"] for job in failed_jobs[:5]]
    query = orm.QueryBuilder().append(orm.Log, filters={"dbnode_id": {"in": watched}, "levelname": {
        "in": ["REPORT", "WARNING", "ERROR", "CRITICAL"]}, "message": {"!like": "%remote folders will not be cleaned"}},
        project=["time", "message"], tag="log")
    logs = query.order_by({"log": [{"time": {"order": "desc"}}, {"id": {"order": "desc"}}]}).limit(3).all()
    reports = [f"{time:%H:%M:%S} {_without_traceback(message)}" for time, message in reversed(logs)]
    return {"step": step, "reason": reason, "jobs": jobs, "reports": reports}


def failure_line(node):
    """One line: the campaign, the step that failed and why (for an exit message)."""
    status = campaign_status(node)
    details = failure(node, status)
    if details is None:
        return f"campaign <{node.pk}> is {status['state']}"
    return f"campaign {node.label} <{node.pk}> {status['state']} in {details['step']}: {details['reason']}"


def status_text(node):
    """The status table of ``campaign status`` (with what failed and why, for a campaign that did not finish OK)."""
    status = campaign_status(node)
    rows = status_rows(status)
    details = failure(node, status)
    if details is not None:
        rows.append(("stopped in" if status["state"] == "killed" else "failed in", details["step"]))
        rows.append(("reason", details["reason"]))
        rows.extend(("failed job" if k == 0 else "", job) for k, job in enumerate(details["jobs"][:5]))
        if len(details["jobs"]) > 5:
            rows.append(("", f"... and {len(details['jobs']) - 5} more (`verdi process status {node.pk}`)"))
        rows.extend(("last reports" if k == 0 else "", line) for k, line in enumerate(details["reports"]))
    return format_table(rows)


@campaign.command("status")
@campaign_argument
@user_errors
def status(campaign):
    """Stage, reference jobs done/failed/running, the latest model's error, NVE runs and predictions of CAMPAIGN
    (one database query). A failed, excepted or killed campaign: the step that failed, why, the failed jobs and
    the last report lines, and exit code 4."""
    click.echo(status_text(campaign))
    if campaign.is_terminated and not campaign.is_finished_ok:
        raise SystemExit(EXIT_CAMPAIGN_FAILED)


@campaign.command("recover")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Daemon workers after the restart (default: as before).")
@user_errors
def recover(workers):
    """Restart the daemon after its workers crashed (killed, out of memory, a lost node): stop it, start it, and
    send the task of every process that the crash left with a checkpoint but no task (AiiDA's submit stores
    the checkpoint before it sends the task), so that every campaign goes on.

    Unlike `verdi process repair` (which also sends missing tasks), it first stops the daemon, so that every task
    of a process that was running is back in the broker's queue and the processes left without one are exactly
    those the crash orphaned, and it leaves processes without a checkpoint alone (stubs of interrupted launches,
    calcfunctions of the killed worker): a task for one of those could only fail (docs/reliability.md).
    """
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_manager

    from aiida_irspec.workflows.resumable import recover_daemon

    loaded = get_manager().get_profile()
    if loaded.process_control_backend is None:
        echo_error_and_exit(f"profile {loaded.name!r} has no broker, hence no daemon to recover: its campaigns run "
                            "in the foreground (`aiida-irspec campaign run`)", EXIT_NO_BROKER)
    revived = recover_daemon(get_daemon_client(), workers)
    click.echo("Daemon restarted; " + (f"sent the missing task of {len(revived)} process(es): {revived}" if revived
                                       else "every active process with a checkpoint had its task."))


# ---------------------------------------------------------------------------------------------- stopping
def cancel_scheduler_job(node):
    """Cancel the scheduler job of CalcJob ``node`` through its computer's transport and scheduler (the direct
    scheduler kills the job's process and all its descendants). Returns None, or why it could not (a job that has
    ended already, a transport that fails)."""
    job_id = node.get_job_id()
    if job_id is None:
        return None
    try:
        with node.computer.get_transport() as transport:
            scheduler = node.computer.get_scheduler()
            scheduler.set_transport(transport)
            scheduler.kill_job(job_id)
    except Exception as error:  # psutil's NoSuchProcess for a job that ended, transport errors: say it, go on
        if type(error).__name__ == "NoSuchProcess":
            return None
        return f"could not cancel the job {job_id} of {node.process_label}<{node.pk}>: {error}"
    return None


def stop_processes(node, message):
    """Stop at once what is left of campaign ``node`` (a foreground run that cannot wait for the processes' own
    kill): cancel the scheduler job of every CalcJob under it that is not terminated, and mark every process under
    it (and itself) that is not terminated killed with ``message``, sealed, its checkpoint removed. Returns the
    processes marked, as ``Label<pk>`` strings."""
    from aiida import orm
    from aiida.engine import ProcessState

    alive = [n for n in [node, *node.called_descendants] if not n.is_terminated]
    for process in alive:
        if isinstance(process, orm.CalcJobNode):
            problem = cancel_scheduler_job(process)
            if problem:
                click.echo(problem, err=True)
    for process in reversed(alive):
        process.set_process_state(ProcessState.KILLED)
        process.set_process_status(message)
        process.delete_checkpoint()
        process.seal()
    return [f"{process.process_label}<{process.pk}>" for process in alive]


# ---------------------------------------------------------------------------------------------- report
def _number(value):
    return "-" if value is None else f"{value:.4f}"


class Report:
    """The report of a campaign: tables (printed as text, written as markdown) and files, in a folder."""

    def __init__(self, node, folder, csv_range="plot"):
        self.node, self.folder, self.csv_range = node, pathlib.Path(folder), csv_range
        self.sections = []  # (title, rows, headers, image)
        self.paths = []
        self.notes = []  # what could not be written, and why
        outputs = node.outputs
        self.learning = outputs.learning if "learning" in outputs else {}
        self.spectra = outputs.spectrum if "spectrum" in outputs else {}
        self.bands = {name: tuple(limits) for name, limits in
                      node.inputs.spectrum.analysis.get_dict().get("bands", {}).items()}

    def planned_files(self):
        """The files the report will write (checked before any work)."""
        names = ["report.md"]
        if "history" in self.learning:
            names.append("learning.png")
        if "spectrum" in self.spectra:
            names += ["spectrum.csv", "spectrum.png"]
        if "model" in self.learning:
            names.append("parity.png")
        names.append(f"provenance_{self.node.pk}.dot")
        return names

    def check(self):
        from aiida_irspec.files import check_output_folder

        check_output_folder(self.folder, self.planned_files(), option="--output")

    def write(self):
        """Compute the tables, write every file; returns the text printed on the terminal."""
        from aiida_irspec.files import write_text

        self.folder.mkdir(parents=True, exist_ok=True)
        status = campaign_status(self.node)
        details = failure(self.node, status)
        self.status_table = status_text(self.node)
        if "history" in self.learning:
            self._learning()
        if "spectrum" in self.spectra:
            self._spectrum()
        if "model" in self.learning:
            self._parity()
        self._provenance()
        markdown = self.markdown(details)
        write_text(self.folder / "report.md", markdown)
        self.paths.insert(0, self.folder / "report.md")
        return self.text()

    def _learning(self):
        history = self.learning.history.get_dict()
        rows = [(row["iteration"], row["attempted"], row["failed"], row["training_set_size"],
                 _number(row["holdout_rmse"]), _number(row["uncertainty_rms"]), _number(row["error"]))
                for row in history["rows"]]
        self.sections.append((f"Active learning (errors of Z in |e|): {history['stop_reason']}", rows,
                              ("iteration", "reference jobs", "failed", "training", "hold-out RMSE", "uncertainty",
                               "error"), "learning.png"))
        path = self.folder / "learning.png"
        plot_history(history, path, title=f"{self.node.label}: active learning")
        self.paths.append(path)

    def _spectrum(self):
        from aiida_irspec.spectra.plotting import default_xlim, plot_spectra

        spectrum = self.spectra.spectrum
        averaged = spectrum.to_averaged()
        reference = self.spectra.reference_spectrum.to_averaged() if "reference_spectrum" in self.spectra else None
        xlim = default_xlim([averaged] + ([reference] if reference is not None else []))
        path = self.folder / "spectrum.csv"
        spectrum.to_csv(path, bands=self.bands or None, frequency_range=xlim if self.csv_range == "plot" else None,
                        header=[f"campaign: {self.node.label} <{self.node.pk}> uuid {self.node.uuid}",
                                f"spectrum: IRSpectrumData<{spectrum.pk}> uuid {spectrum.uuid}",
                                "written by: aiida-irspec campaign report ("
                                + ("the plotted range)" if self.csv_range == "plot" else "every row)")])
        self.paths.append(path)
        unit = spectrum.base.attributes.get("integrated_unit")
        if self.bands:
            rows = [(row["name"], f"{row['lo_cm1']:.0f}-{row['hi_cm1']:.0f}",
                     f"{row['integral']:.4g} +- {2 * row['integral_stderr']:.2g}",
                     f"{row['peak_cm1']:.0f} +- {2 * row['peak_stderr']:.0f}")
                    for row in averaged.band_summary(self.bands)]
            self.sections.append((f"Bands ({spectrum.n_runs} runs; +- 2 standard errors; intensity in {unit})", rows,
                                  ("band", "range (cm^-1)", "intensity", "peak (cm^-1)"), None))
        if self.bands and reference is not None:
            from aiida_irspec.campaign.validation import compare_bands

            rows = [(row["name"], f"{100 * row['inside_band']:.0f}%",
                     f"{row['integral_model']:.4g} / {row['integral_reference']:.4g}",
                     "yes" if row["integral_agrees"] else "no")
                    for row in compare_bands(averaged, reference, self.bands)]
            self.sections.append(("Model against the engine's own dipoles along the same runs", rows,
                                  ("band", "reference inside +-2 stderr", "intensity model / reference",
                                   "intensities agree (2 sigma)"), None))
        path = self.folder / "spectrum.png"
        temperature = averaged.settings.get("temperature_K")
        plot_spectra([averaged], labels=[f"learned model: {averaged.n_runs} runs at {temperature:g} K, band ±2 s.e."],
                     path=path,
                     reference=reference, reference_label="engine's own dipoles (reference)", bands=self.bands,
                     title=f"{self.node.label} <{self.node.pk}>", xlim=xlim)
        self.sections.append(("Spectrum", [], (), "spectrum.png"))
        self.paths.append(path)

    def _parity(self):
        from aiida_irspec.data.parity import model_parity, plot_parity

        path = self.folder / "parity.png"
        try:
            with ignore_molecule_cell_warning():
                parity = model_parity(self.learning.model)
        except Exception as error:  # the model cannot be loaded or evaluated here: the rest of the report stands
            self.notes.append(f"parity.png not written: the model <{self.learning.model.pk}> cannot be evaluated "
                              f"here ({type(error).__name__}: {error})")
            return
        plot_parity(parity, path=path, title=f"{self.node.label}: Born charges, model against reference")
        self.sections.append(("Model", [], (), "parity.png"))
        self.paths.append(path)

    def _provenance(self):
        self.paths.extend(write_provenance_graph(self.node, self.folder))

    def text(self):
        parts = [self.status_table]
        for title, rows, headers, _ in self.sections:
            if rows:
                parts.append(f"{title}:\n{format_table(rows, headers)}")
        return "\n\n".join(parts + self.notes)

    def markdown(self, details):
        from tabulate import tabulate

        from aiida_irspec import __version__

        lines = [f"# Campaign {self.node.label} <{self.node.pk}>", "",
                 f"UUID {self.node.uuid}; report written by aiida-irspec {__version__} (`aiida-irspec campaign "
                 f"report`). Spectra: Green-Kubo, see docs/theory.md.", "", "```text", self.status_table, "```", ""]
        for title, rows, headers, image in self.sections:
            lines += [f"## {title}", ""]
            if rows:
                lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
            if image:
                lines += [f"![{title}]({image})", ""]
        lines += ["## Files", ""] + [f"- `{path.name}`" for path in self.paths] + [""]
        lines += [f"{note}\n" for note in self.notes]
        return "\n".join(lines)


def write_report(node, folder, csv_range="plot"):
    """Check the output folder, then write the report of campaign ``node`` in it (report.md, spectrum.csv and
    .png, learning.png, parity.png, the provenance graph). Returns (paths written, text of the tables)."""
    report_ = Report(node, folder, csv_range)
    report_.check()
    text = report_.write()
    return report_.paths, text


@campaign.command("report")
@campaign_argument
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=pathlib.Path), default=".",
              show_default=True, help="Folder for the report (created if missing).")
@click.option("--csv-range", type=click.Choice(["plot", "all"]), default="plot", show_default=True,
              help="Rows of spectrum.csv: the plotted range, or all of them up to the Nyquist frequency.")
@user_errors
def report(campaign, output, csv_range):
    """The report of CAMPAIGN: status, learning history, band table, model against reference; writes report.md
    (all of it), spectrum.png (whole range and one panel per band, model and reference), spectrum.csv (units,
    settings and the campaign in its header), learning.png, parity.png and the provenance graph in OUTPUT. A
    campaign that failed: what there is, what failed and why, and exit code 4."""
    paths, text = write_report(campaign, output, csv_range)
    click.echo(text)
    click.echo(f"\nWrote {', '.join(path.name for path in paths)} in {output}")
    end_with_state(campaign)


@contextlib.contextmanager
def ignore_molecule_cell_warning():
    """Silence featomic's warning that the (ignored) cell of a non-periodic structure is set to zero."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="periodic boundary conditions are disabled")
        yield


def write_provenance_graph(node, folder):
    """The provenance graph of ``node``: the whole graph (ancestors and descendants, as `verdi node graph
    generate`) as graphviz source ``provenance_<pk>.dot``, and, when graphviz's ``dot`` is installed, an overview
    (the node's inputs, outputs and the processes it called) as ``provenance_<pk>.png``; both written atomically.
    Returns the paths."""
    import tempfile

    from aiida.tools.visualization import Graph

    from aiida_irspec.files import write_bytes, write_text

    folder = pathlib.Path(folder)
    full = Graph(node_id_type="pk")
    full.recurse_ancestors(node, annotate_links="both")
    full.recurse_descendants(node, annotate_links="both")
    paths = [folder / f"provenance_{node.pk}.dot"]
    write_text(paths[0], full.graphviz.source)
    if shutil.which("dot"):
        overview = Graph(node_id_type="pk")
        overview.recurse_ancestors(node, depth=1, annotate_links="both")
        overview.recurse_descendants(node, depth=1, annotate_links="both")
        with tempfile.TemporaryDirectory() as scratch:
            rendered = overview.graphviz.render(outfile=pathlib.Path(scratch) / "overview.png", format="png",
                                                cleanup=True)
            paths.append(folder / f"provenance_{node.pk}.png")
            write_bytes(paths[-1], pathlib.Path(rendered).read_bytes())
    return paths


def plot_history(history, path, title=None):
    """Error against the number of reference jobs (hold-out RMSE, RMS uncertainty on the pool, the target)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from aiida_irspec.files import savefig

    rows = history["rows"]
    figure = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = figure.add_subplot()
    attempted = [row["attempted"] for row in rows]
    for key, label in (("holdout_rmse", "hold-out RMSE of Z"), ("uncertainty_rms", "RMS uncertainty on the pool")):
        values = [row[key] for row in rows]
        if any(v is not None for v in values):
            ax.plot(attempted, [float("nan") if v is None else v for v in values], "o-", label=label)
    ax.axhline(history["target_error"], color="k", ls="--", lw=1, label="target")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    held_out = len(history.get("holdout", []))
    ax.set_xlabel("reference calculations" + (f" ({held_out} of them held out)" if held_out else ""))
    ax.set_ylabel("error of Z (|e|)")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(frameon=False)
    savefig(figure, path, dpi=110)
