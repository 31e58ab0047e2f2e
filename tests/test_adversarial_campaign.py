"""The campaign commands under signals and failures (issue classes "Signals" and "Reports").

Signals: a real ``aiida-irspec campaign run`` process gets a real SIGINT (as Ctrl-C sends it) or SIGTERM while a
tblite engine job runs: the command ends with one ``Error:`` line and exit code 130 / 143, no engine process of the
campaign is left (looked for with psutil among every process, by working folder), every process of the campaign
ends killed and sealed, and ``campaign status`` says it was interrupted (exit 4). A second signal stops at once.

Reports: a campaign that failed (an engine that crashes), one that excepted (a fault injected into a step) and one
that was killed: ``campaign status`` and ``campaign report`` say which step failed, its exit code and the last report
lines, and exit 4; ``campaign run`` itself exits 4 with the same line. ``campaign submit`` on a profile without a
broker, or with one that cannot be reached: one ``Error:`` line, exit 5, no node stored.
"""

import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import tiny_campaign_spec

pytest.importorskip("tblite")
pytestmark = pytest.mark.adversarial

CLI = str(pathlib.Path(sys.executable).with_name("aiida-irspec"))


@pytest.fixture
def campaign_file(aiida_profile, tmp_path):
    """A function engine_code -> (path of a tiny campaign file with a label of its own, the computer): codes of a
    computer of its own (its work folder tells this campaign's engine processes from any other)."""
    from aiida_irspec.cli.demo import irspec_executable, setup_codes, setup_computer

    computer, _ = setup_computer(f"localhost-{secrets.token_hex(3)}")
    setup_codes(computer, irspec_executable())

    def make(engine=None):
        spec = tiny_campaign_spec(engine or f"tblite@{computer.label}", f"irspec@{computer.label}")
        spec["name"] = f"adversarial-{secrets.token_hex(3)}"
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path, spec["name"], computer

    return make


def campaign_named(label):
    from aiida import orm

    return orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": label}).one()[0]


def engines_under(folder):
    """The engine processes (``aiida-irspec engine ...``) whose working folder is under ``folder``."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if "engine" in (process.info["cmdline"] or []) and (process.info["cwd"] or "").startswith(folder):
                found.append(process)
        except psutil.Error:
            continue
    return found


def alive(process):
    """Whether ``process`` (psutil) still runs: an exited process that its parent has not reaped yet (a zombie;
    PID 1 reaps orphans when it gets to them) does not."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def no_engine_left(workdir, seen, seconds=10):
    """True once no engine process runs under ``workdir`` and none of ``seen`` runs, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(map(alive, engines_under(workdir) + list(seen))):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def invoke(*arguments):
    from aiida_irspec.cli import cli

    return CliRunner().invoke(cli, list(map(str, arguments)))


def run_and_signal(profile, path, computer, number, twice=None):
    """Start `campaign run` as a process, signal it as soon as an engine job of its campaign runs (and again
    ``twice`` seconds later); returns (exit code, stdout, stderr, the engine processes running when it was
    signalled)."""
    workdir = computer.get_workdir().split("{username}")[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # AIIDA_PATH: the test's config
    process = subprocess.Popen([CLI, "-p", profile.name, "campaign", "run", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (running := engines_under(workdir)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running, "no engine process started"
    process.send_signal(number)
    if twice is not None:
        time.sleep(twice)
        process.send_signal(number)
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err, running, workdir


def assert_interrupted(label, name):
    """Every process of the campaign terminated (killed, or finished before the signal), sealed; status says so."""
    node = campaign_named(label)
    assert node.is_killed and name in node.process_status
    for process in node.called_descendants:
        assert process.is_terminated and process.is_sealed, (process, process.process_state)
    out = invoke("campaign", "status", node.pk)
    assert out.exit_code == 4, out.output
    assert f"killed: interrupted by {name} during the foreground run" in out.output and "stopped in" in out.output
    return node


@pytest.mark.parametrize("name", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.reliability)])
def test_signal_stops_the_campaign_and_every_engine(aiida_profile, campaign_file, name, tmp_path):
    path, label, computer = campaign_file()
    code, out, err, running, workdir = run_and_signal(aiida_profile, path, computer, getattr(signal, name))
    assert code == {"SIGINT": 130, "SIGTERM": 143}[name], (out, err)
    assert "Traceback" not in out + err and "Task exception" not in err, err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        next(line for line in err.splitlines() if line.startswith("Error: campaign <"))]
    assert no_engine_left(workdir, running), [(p.pid, p.cmdline()) for p in running if alive(p)]
    node = assert_interrupted(label, name)
    report = invoke("campaign", "report", node.pk, "-o", tmp_path / "report")
    assert report.exit_code == 4 and "interrupted by" in report.output
    assert "stopped in" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.reliability
@pytest.mark.parametrize("delay", [0.3, 1.0])  # during the kills, or once they have ended (a late signal: ignored)
def test_a_second_signal_stops_at_once(aiida_profile, campaign_file, delay):
    path, label, computer = campaign_file()
    code, out, err, running, workdir = run_and_signal(aiida_profile, path, computer, signal.SIGINT, twice=delay)
    assert code == 130 and "Traceback" not in out + err and "Task exception" not in err, err
    assert no_engine_left(workdir, running)
    assert_interrupted(label, "SIGINT")


@pytest.fixture
def crashing_engine(aiida_code_installed, tmp_path):
    """An engine code whose every job dies at once without output (a crash, 310; the restart WorkChain's rerun too)."""
    script = tmp_path / "crashing-engine"
    script.write_text("#!/bin/bash\necho 'fault injected: the engine crashed' >&2\nexit 9\n")
    script.chmod(0o755)

    def make(computer):
        return aiida_code_installed(filepath_executable=str(script), computer=computer,
                                    default_calc_job_plugin="irspec.tblite.md", label=f"crash-{secrets.token_hex(3)}")

    return make


def test_failed_campaign_says_what_failed_and_why(aiida_profile, campaign_file, crashing_engine, tmp_path):
    from aiida_irspec.cli.demo import setup_computer

    computer, _ = setup_computer("localhost-crash")
    engine = crashing_engine(computer)
    path, label, _ = campaign_file(engine.full_label)
    run = invoke("-p", aiida_profile.name, "campaign", "run", path)
    assert run.exit_code == 4, run.output
    node = campaign_named(label)
    assert node.exit_status == 430
    assert f"Error: campaign {label} <{node.pk}> failed in stage 1/3 sampling" in run.output
    status = invoke("campaign", "status", label)
    assert status.exit_code == 4 and "Traceback" not in status.output
    assert "failed (exit 430)" in status.output and "(MdWorkChain<" in status.output and "failed, exit 401)" in \
        status.output
    assert "exit 430: the sampling MD" in status.output and "TbliteMdWorkChain<" in status.output and \
        "exit 310" in status.output
    assert "last reports" in status.output and "crashed again (exit 310): giving up" in status.output
    report = invoke("campaign", "report", node.uuid, "-o", tmp_path / "report")
    assert report.exit_code == 4 and "failed in" in report.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "exit 430" in text and "exit 310" in text


def test_excepted_campaign_says_the_exception(aiida_profile, campaign_file, monkeypatch):
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    def broken(self, stage):
        raise RuntimeError("fault injected into the first step")

    monkeypatch.setattr(CampaignWorkChain, "_label", broken)  # called by the first step (the outline holds the steps)
    path, label, _ = campaign_file()
    run = invoke("-p", aiida_profile.name, "campaign", "run", path)
    assert run.exit_code == 4 and "excepted" in run.output, run.output
    status = invoke("campaign", "status", label)
    assert status.exit_code == 4
    assert "excepted: RuntimeError: fault injected into the first step" in status.output
    assert "Traceback" not in status.output


def test_submit_without_a_broker_is_one_line(aiida_profile, campaign_file):
    from aiida import orm

    path, _, _ = campaign_file()
    before = orm.QueryBuilder().append(orm.WorkflowNode).count()
    out = invoke("-p", aiida_profile.name, "campaign", "submit", path)
    assert out.exit_code == 5 and "has no broker" in out.output and "campaign run" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
    assert orm.QueryBuilder().append(orm.WorkflowNode).count() == before


def test_submit_to_an_unreachable_broker_is_one_line(aiida_config_tmp, aiida_profile_factory, tmp_path):
    from aiida import orm
    from aiida.manage import get_manager

    from aiida_irspec.cli.demo import irspec_executable, setup_codes, setup_computer

    broker = {"broker_protocol": "amqp", "broker_username": "guest", "broker_password": "guest",
              "broker_host": "127.0.0.1", "broker_port": 1, "broker_virtual_host": ""}  # nothing listens on port 1
    try:
        with aiida_profile_factory(aiida_config_tmp, broker_backend="core.rabbitmq", broker_config=broker) as profile:
            computer, _ = setup_computer("localhost")
            setup_codes(computer, irspec_executable())
            path = tmp_path / "tiny.yaml"
            path.write_text(yaml.safe_dump(tiny_campaign_spec("tblite@localhost", "irspec@localhost")))
            out = invoke("-p", profile.name, "campaign", "submit", path)
            assert out.exit_code == 5, out.output
            assert out.output.startswith(f"Error: cannot reach the broker of profile '{profile.name}'")
            assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
            assert orm.QueryBuilder().append(orm.WorkflowNode).count() == 0
    finally:
        get_manager().reset_profile()
