"""SubmitOnce (aiida_irspec.workflows.resumable): a WorkChain step that runs again after a crashed daemon worker
does not launch its sub-processes a second time (the daemon test: tests/test_reliability_daemon.py)."""

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ToContext, WorkChain
from plumpy import ProcessState

from aiida_irspec.workflows.resumable import SubmitOnce, call_link_label, was_started


class Child(WorkChain):
    """Does nothing."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=orm.Int)
        spec.outline(cls.noop)

    def noop(self):
        pass


class Parent(SubmitOnce, WorkChain):
    """Submits its child twice in one step, as a step re-run from the last checkpoint does; and once more where a
    crashed worker left a stub child node without a process state."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch, cls.results)
        spec.output("pks", valid_type=orm.List)

    def launch(self):
        inputs = {"x": orm.Int(1), "metadata": {"call_link_label": "child"}}
        first, again = self.submit(Child, **inputs), self.submit(Child, **inputs)
        stub = orm.WorkflowNode()  # killed before it got a process state
        stub.base.links.add_incoming(self.node, LinkType.CALL_WORK, "restarted")
        stub.store()
        created = orm.WorkflowNode()  # killed after its "created" state, before its checkpoint: it can never run
        created.set_process_state(ProcessState.CREATED)
        created.base.links.add_incoming(self.node, LinkType.CALL_WORK, "restarted")
        created.store()
        builder = Child.get_builder()
        builder.x = orm.Int(2)
        builder.metadata.call_link_label = "restarted"
        relaunched = self.submit(builder)
        self.ctx.pks = [first.pk, again.pk, stub.pk, relaunched.pk, created.pk]
        return ToContext(first=first, relaunched=relaunched)

    def results(self):
        self.out("pks", orm.List(self.ctx.pks).store())


def test_a_labelled_submission_is_launched_once(aiida_profile_clean):
    from aiida.engine import run_get_node

    results, node = run_get_node(Parent)
    first, again, stub, relaunched, created = results["pks"].get_list()
    assert first == again  # the earlier launch is reused, not repeated
    assert relaunched not in (first, stub, created)  # stubs: not waited for
    assert orm.load_node(relaunched).is_finished_ok
    for pk in (stub, created):  # nor left active, nor counted as started
        assert orm.load_node(pk).is_killed and orm.load_node(pk).is_sealed and not was_started(orm.load_node(pk))
    assert was_started(orm.load_node(first)) and was_started(orm.load_node(relaunched))
    labels = sorted(link.link_label for link in node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all())
    assert labels == ["child", "restarted", "restarted", "restarted"]
    logs = orm.Log.collection.get_logs_for(node)
    assert "was launched before an interruption" in " ".join(log.message for log in logs)


def test_call_link_label_of_classes_and_builders():
    builder = Child.get_builder()
    builder.metadata.call_link_label = "b"
    assert call_link_label(builder) == "b"
    assert call_link_label(Child, {"metadata": {"call_link_label": "i"}}) == "i"
    assert call_link_label(Child, metadata={"call_link_label": "k"}) == "k" and call_link_label(Child, x=1) is None


@pytest.mark.services
@pytest.mark.parametrize("profile_kind", ["postgres_rabbitmq_profile", "sqlite_zeromq_profile"])
def test_recover_sends_the_task_of_a_process_left_with_a_checkpoint_and_no_task(profile_kind, request):
    """The window of AiiDA's submit between a process's checkpoint and its task, made on purpose: the daemon
    never runs such a process; `aiida-irspec campaign recover` restarts the daemon, sends exactly its task,
    and the daemon runs it to the result of a process submitted normally."""
    from aiida.engine import submit
    from aiida.manage import get_manager
    from aiida.plugins import WorkflowFactory
    from click.testing import CliRunner
    from daemon_helpers import running_daemon, wait_until

    from aiida_irspec.cli import cli

    profile = request.getfixturevalue(profile_kind)
    add_multiply = WorkflowFactory("core.arithmetic.add_multiply")
    inputs = {"x": orm.Int(1), "y": orm.Int(2), "z": orm.Int(3)}
    with running_daemon(profile) as client:
        runner = get_manager().get_runner()
        process = runner.instantiate_process(add_multiply, **inputs)
        runner.persister.save_checkpoint(process)  # what submit does before it sends the task ...
        process.close()  # ... and here the worker "dies": no task
        orphan = process.node
        queued = submit(add_multiply, **inputs)
        assert wait_until(lambda: queued.is_terminated, 180), client.daemon_log_file
        assert orphan.checkpoint is not None and orphan.process_state == ProcessState.CREATED  # never picked up

        result = CliRunner().invoke(cli, ["-p", profile.name, "campaign", "recover", "--workers", "1"])
        assert result.exit_code == 0, result.output
        assert f"sent the missing task of 1 process(es): [{orphan.pk}]" in result.output
        assert wait_until(lambda: orphan.is_terminated, 180), client.daemon_log_file
    assert orphan.is_finished_ok and queued.is_finished_ok
    assert orphan.outputs.result.value == queued.outputs.result.value == 9


def test_recover_on_a_profile_without_a_broker_says_there_is_no_daemon(aiida_config_tmp, aiida_profile_factory):
    from click.testing import CliRunner

    from aiida_irspec.cli import cli

    from aiida.manage import get_manager

    try:
        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos") as profile:
            result = CliRunner().invoke(cli, ["-p", profile.name, "campaign", "recover"])
    finally:
        get_manager().reset_profile()
    assert result.exit_code == 5 and "has no broker, hence no daemon" in result.output, result.output
