"""Launching sub-processes so that a crashed daemon worker cannot launch one twice.

A WorkChain step that submits sub-processes is checkpointed only when it returns. When the daemon worker
dies in between (SIGKILL, out of memory, a lost node), the sub-processes it submitted are already stored
and queued, so they run; but the restarted WorkChain resumes from the checkpoint before the step and runs
the step again, and without care submits the same jobs a second time.

:class:`SubmitOnce` makes every ``submit`` with a ``call_link_label`` idempotent: when the WorkChain already
called a process with that label (an interrupted earlier run of the same step), that process is returned
and waited for instead of launching a new one. The exception is a process node that never got a process
state: the worker died while creating it, before its checkpoint and its task existed, so it can never run;
it is left as it is and the process is launched anew. Call link labels must therefore be unique per launch
within a WorkChain (ours are: per stage, frame, run or iteration).
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


class SubmitOnce:
    """Mixin for WorkChains: ``submit`` does not launch a labelled sub-process twice (see the module doc)."""

    def submit(self, process, inputs=None, **kwargs):
        label = call_link_label(process, inputs, **kwargs)
        if label is not None:
            earlier = self.node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK),
                                                        link_label_filter=label).all_nodes()
            launched = [node for node in earlier if node.process_state is not None]
            if launched:
                self.report(f"{label}: {launched[0].process_label}<{launched[0].pk}> was launched before an "
                            f"interruption; waiting for it instead of launching it again")
                return launched[0]
            for node in earlier:
                self.report(f"{label}: {node.process_label}<{node.pk}> was never started (interrupted while it "
                            f"was created); launching it anew")
        return super().submit(process, inputs, **kwargs)
