"""What the engine-agnostic WorkChains share: the common inputs, the dispatch by engine, the outputs.

In the spirit of aiida-common-workflows: the same inputs and outputs whatever the engine. The WorkChain
asks the engine's process class (:mod:`aiida_irspec.workflows.engines`) for a builder with
``get_builder_from_protocol(code, structure, protocol, overrides, options, **task_kwargs)``, runs it and
passes its outputs on. Engine-specific extras go in the ``engine_inputs`` namespace: Data nodes whose
plain values (Str, Int, Float, Bool, Dict, List) are handed over as Python values and any other node
(KpointsData, SinglefileData, RemoteData, ...) as it is.

A CalcJob of the engine (tblite's) that the scheduler ends for its wall time (exit status 120) is run
once more, from the start, with twice its ``max_wallclock_seconds``; when that one fails too, the WorkChain
fails with 401. (VASP's processes are WorkChains that restart from the killed run themselves.)

Exit codes: 400 ERROR_INVALID_ENGINE_INPUTS (the engine refused to build its inputs); 401
ERROR_ENGINE_FAILED (the engine process did not finish successfully: its exit status is in the message,
and whatever outputs it made are still attached); 402 ERROR_ENGINE_OUTPUT_MISSING.
"""

from aiida import orm
from aiida.engine import CalcJob, ToContext, WorkChain, if_

from aiida_irspec.workflows.engines import ENGINES, engine_process
from aiida_irspec.workflows.resumable import SubmitOnce

PROTOCOLS = ("fast", "moderate", "precise")
WALLTIME = CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status  # 120
WALLTIME_FACTOR = 2


def _validate_engine(value, _):
    if value.value not in ENGINES:
        return f"unknown engine {value.value!r}; known: {', '.join(sorted(ENGINES))}"
    return None


def _validate_protocol(value, _):
    if value.value not in PROTOCOLS:
        return f"unknown protocol {value.value!r}; use one of {', '.join(PROTOCOLS)}"
    return None


def plain(node):
    """The Python value of a Str/Int/Float/Bool/Dict/List node; any other node as it is."""
    if isinstance(node, orm.Dict):
        return node.get_dict()
    if isinstance(node, orm.List):
        return node.get_list()
    if isinstance(node, (orm.Str, orm.Int, orm.Float, orm.Bool)):
        return node.value
    return node


class EngineWorkChain(SubmitOnce, WorkChain):
    """Run one task with the chosen engine. Subclasses set ``_task`` and ``_task_outputs`` and may add inputs
    that they turn into task keyword arguments in :meth:`task_kwargs`."""

    _task = None
    _task_outputs = ()  # (name, required)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The structure.")
        spec.input("engine", valid_type=orm.Str, validator=_validate_engine,
                   help=f"The engine: one of {', '.join(sorted(ENGINES))}.")
        spec.input("code", valid_type=orm.AbstractCode, help="The engine's Code.")
        spec.input("protocol", valid_type=orm.Str, default=lambda: orm.Str("moderate"), validator=_validate_protocol,
                   help="Protocol level: fast, moderate or precise.")
        spec.input("overrides", valid_type=orm.Dict, required=False,
                   help="Engine-specific overrides of the protocol (see the engine's get_builder_from_protocol).")
        spec.input("options", valid_type=orm.Dict, required=False,
                   help="metadata.options of the engine's calculations (resources, max_wallclock_seconds, ...).")
        spec.input_namespace("engine_inputs", valid_type=orm.Data, dynamic=True, required=False,
                             help="Engine-specific extras passed to get_builder_from_protocol as keyword arguments "
                                  "(e.g. VASP: potential_family, potential_mapping, kpoints, ml_ff).")
        spec.outline(cls.run_engine, if_(cls.killed_for_walltime)(cls.rerun_with_more_walltime), cls.results)
        spec.exit_code(400, "ERROR_INVALID_ENGINE_INPUTS", message="the {engine} engine refused the inputs: {error}")
        spec.exit_code(401, "ERROR_ENGINE_FAILED",
                       message="the {engine} {task} process <{pk}> failed with exit status {status}: {message}")
        spec.exit_code(402, "ERROR_ENGINE_OUTPUT_MISSING",
                       message="the {engine} {task} process <{pk}> finished without the output {output}")

    def task_kwargs(self):
        """The task's own keyword arguments for ``get_builder_from_protocol`` (none by default)."""
        return {}

    def run_engine(self):
        """Build the engine's inputs from its protocol and run it."""
        return self._launch()

    def _launch(self, options=None, link_label=None):
        """Build and submit the engine process; ``options`` are merged over the input ones."""
        engine = self.inputs.engine.value
        process = engine_process(engine, self._task)
        extras = {name: plain(node) for name, node in self.inputs.get("engine_inputs", {}).items()}
        merged = {**(self.inputs.options.get_dict() if "options" in self.inputs else {}), **(options or {})}
        try:
            builder = process.get_builder_from_protocol(
                self.inputs.code, self.inputs.structure, protocol=self.inputs.protocol.value,
                overrides=self.inputs.overrides.get_dict() if "overrides" in self.inputs else None,
                options=merged or None, **self.task_kwargs(), **extras)
        except (ValueError, TypeError) as error:
            self.report(f"building the {engine} inputs failed: {error}")
            return self.exit_codes.ERROR_INVALID_ENGINE_INPUTS.format(engine=engine, error=str(error))
        builder.metadata.call_link_label = link_label or f"{engine}_{self._task}"
        node = self.submit(builder)
        self.report(f"launched {process.__name__}<{node.pk}> ({engine}, protocol {self.inputs.protocol.value})")
        return ToContext(engine_process=node)

    def killed_for_walltime(self):
        """True when the engine's CalcJob was ended by the scheduler for its wall time (exit status 120)."""
        node = self.ctx.engine_process
        return node.exit_status == WALLTIME and node.process_type.startswith("aiida.calculations:")

    def rerun_with_more_walltime(self):
        """Run the job once more, from the start, with ``WALLTIME_FACTOR`` times the wall time of the killed one."""
        node = self.ctx.engine_process
        walltime = node.get_option("max_wallclock_seconds")
        if not walltime:
            self.report(f"{node.process_label}<{node.pk}> ran out of the scheduler's default wall time: not rerun")
            return None
        self.report(f"{node.process_label}<{node.pk}> ran out of its wall time ({walltime} s): running it again "
                    f"with {WALLTIME_FACTOR * walltime} s")
        return self._launch(options={"max_wallclock_seconds": WALLTIME_FACTOR * walltime},
                            link_label=f"{self.inputs.engine.value}_{self._task}_walltime_rerun")

    def results(self):
        """Pass the engine's outputs on; fail with 401 / 402 when it failed or an output is missing."""
        node = self.ctx.engine_process
        engine = self.inputs.engine.value
        for name, required in self._task_outputs:
            if name in node.outputs:
                self.out(name, node.outputs[name])
            elif required and node.is_finished_ok:
                return self.exit_codes.ERROR_ENGINE_OUTPUT_MISSING.format(engine=engine, task=self._task, pk=node.pk,
                                                                   output=name)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_ENGINE_FAILED.format(engine=engine, task=self._task, pk=node.pk,
                                                              status=node.exit_status, message=node.exit_message)
        return None
