"""Launching sub-processes so that a crashed daemon worker cannot launch one twice.

A WorkChain step that submits sub-processes is checkpointed only when it returns. When the daemon worker
dies in between (SIGKILL, out of memory, a lost node), the sub-processes it submitted are already stored
and queued, so they run; but the restarted WorkChain resumes from the checkpoint before the step and runs
the step again, and without care submits the same jobs a second time.

:class:`SubmitOnce` makes every ``submit`` with a ``call_link_label`` idempotent: when the WorkChain already
called a process with that label (an interrupted earlier run of the same step), that process is returned
and waited for instead of launching a new one. The exception is a process node that never got a process
state, or one still "created" without a checkpoint: the worker died while creating it, before its checkpoint
and its task existed, so it can never run; it is marked killed (with a status saying so) and the process is
launched anew. Call link labels must therefore be unique per launch
within a WorkChain (ours are: per stage, frame, run or iteration).

One window is AiiDA's own: ``submit`` stores the new process's checkpoint and then sends its task to the
broker. A worker killed in between leaves a process with a checkpoint and no task, which no worker will ever
run (and whose parent waits for it). :func:`recover_daemon` (``aiida-irspec campaign recover``) restarts
the daemon after a crash and sends the missing tasks.
"""

from aiida.common.links import LinkType
from aiida.engine import ProcessBuilder


def call_link_label(process, inputs=None, **kwargs):
    """The ``metadata.call_link_label`` of a submission (a process class with inputs, or a builder), or None."""
    if isinstance(process, ProcessBuilder):
        inputs = process._inputs(prune=True)  # the builder's inputs as a plain dict
    else:
        inputs = {**(inputs or {}), **kwargs}
    return dict(inputs.get("metadata") or {}).get("call_link_label")


#: Process status of a stub that :class:`SubmitOnce` marked killed.
STUB_STATUS = "never started: its launch was interrupted by a crashed daemon worker"


def was_started(node):
    """True when the process of ``node`` ran or can run: it has a checkpoint, or it terminated and is not a stub.
    (A task of a process without a checkpoint cannot be continued: such a node is a stub of an interrupted
    launch.)"""
    return node.checkpoint is not None or (node.is_terminated and node.process_status != STUB_STATUS)


def retire_stub(node):
    """Mark the stub of an interrupted launch killed (status :data:`STUB_STATUS`) and seal it, so that it no
    longer looks active."""
    from plumpy import ProcessState

    if not node.is_sealed:
        node.set_process_state(ProcessState.KILLED)
        node.set_process_status(STUB_STATUS)
        node.seal()


class SubmitOnce:
    """Mixin for WorkChains: ``submit`` does not launch a labelled sub-process twice (see the module doc)."""

    def submit(self, process, inputs=None, **kwargs):
        label = call_link_label(process, inputs, **kwargs)
        if label is not None:
            earlier = self.node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK),
                                                        link_label_filter=label).all_nodes()
            launched = [node for node in earlier if was_started(node)]
            if launched:
                self.report(f"{label}: {launched[0].process_label}<{launched[0].pk}> was launched before an "
                            f"interruption; waiting for it instead of launching it again")
                return launched[0]
            for node in earlier:
                self.report(f"{label}: {node.process_label}<{node.pk}> was never started (interrupted while it "
                            f"was created); marking it killed and launching it anew")
                retire_stub(node)
        return super().submit(process, inputs, **kwargs)


def orphaned_processes(broker):
    """PKs of the active processes that have a checkpoint but no task in ``broker``'s queue.

    Only meaningful with the daemon stopped: then the tasks of every process that was running are back in the
    queue. Processes without a checkpoint (stubs of interrupted launches, calcfunctions of a killed worker)
    cannot be continued from a task and are left to :class:`SubmitOnce`.
    """
    from aiida import orm
    from aiida.engine.processes.control import get_process_tasks

    queued = set(get_process_tasks(broker))
    checkpointed = orm.QueryBuilder().append(orm.ProcessNode, project="id", filters={
        "attributes.process_state": {"in": ["created", "waiting", "running"]},
        "attributes": {"has_key": orm.ProcessNode.CHECKPOINT_KEY}}).all(flat=True)
    return sorted(pk for pk in checkpointed if pk not in queued)


def recover_daemon(client, workers=None):
    """Restart the daemon of ``client`` (a DaemonClient) after its workers crashed, without losing a process.

    Stops the daemon, finds the :func:`orphaned_processes` (with no worker left, every task of a process that
    was running is back in the broker's queue: RabbitMQ requeues a dead consumer's messages, the ZeroMQ
    broker's on-disk queue its "processing" tasks), starts the daemon with ``workers`` workers (default: as
    many as it had, at least one) and sends the orphans' tasks. Returns their PKs.
    """
    from aiida.manage import get_manager

    if workers is None:
        workers = int(client.get_numprocesses().get("numprocesses", 1)) if client.is_daemon_running else 1
    if client.is_daemon_running:
        client.stop_daemon(wait=True, timeout=120)
    manager = get_manager()
    orphans = orphaned_processes(manager.get_broker())
    client.start_daemon(number_workers=max(workers, 1), timeout=120)
    manager.reset_broker()  # a ZeroMQ broker service starts anew with the daemon: connect to the new one
    controller = manager.get_process_controller()
    for pk in orphans:
        controller.continue_process(pk, nowait=True, no_reply=True)
    return orphans
