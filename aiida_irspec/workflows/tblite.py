"""tblite jobs that restart themselves: ``irspec.tblite.md`` and ``irspec.tblite.born_charges`` (WorkChains).

Each is a :class:`~aiida.engine.BaseRestartWorkChain` around the tblite CalcJob of the same name (entry points in
``aiida.calculations``), in the manner of aiida-vasp's VaspWorkChain: the CalcJob's inputs are exposed at the top
level (``code``, ``structure``, ``parameters``, for MD ``velocities``) and its ``metadata`` in the namespace
``calc``; its outputs are passed on. Process handlers, by priority:

- out of wall time (the scheduler's 120): run the job again from the start with twice its
  ``max_wallclock_seconds``, at most twice (so up to 4x the first wall time); then, or when the job had no
  wall time of its own to double, the WorkChain ends with 120;
- a crash, i.e. a job that ended without its outputs (summary.json missing or unreadable 310/311, the npz
  missing or unreadable 312/313, no retrieved folder 100, the scheduler's node failure 140): run it once more
  unchanged; a second crash in a row ends the WorkChain with that job's exit code;
- anything else that failed (the engine's deterministic refusals: 320 invalid input, 321 periodic cell, 322
  tblite failed, 323 energy drift; the scheduler's out of memory 110, ...): no rerun, the WorkChain ends with
  the job's exit code and message, and attaches what the job made (e.g. the trajectory of a drifting run).

The exit codes of the CalcJob (its 310-339 and the scheduler's 100-199) are the WorkChain's own, with the same
numbers, labels and messages; aiida-core's BaseRestartWorkChain adds 301/302 (the job excepted / was killed) and
401 (``max_iterations`` reached, 5 by default).

Protocols: ``protocols/tblite/{md,born_charges}.yaml`` through :class:`~aiida_irspec.workflows.protocols.
ProtocolMixin` (``get_available_protocols()``, ``get_builder_from_protocol``); the YAML files mirror the ports.
"""

from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, process_handler, while_
from aiida.engine.processes.calcjobs.calcjob import CalcJob

from aiida_irspec.calculations.tblite import TbliteBornChargesCalculation, TbliteCalculation, TbliteMdCalculation
from aiida_irspec.workflows.engine_base import fill_builder
from aiida_irspec.workflows.engines import ENGINES
from aiida_irspec.workflows.protocols import ProtocolMixin, overrides_mapping, recursive_merge
from aiida_irspec.workflows.resumable import SubmitOnce

#: Exit codes of a job that ended without its outputs for a reason that a second run may not meet.
CRASHES = (CalcJob.exit_codes.ERROR_NO_RETRIEVED_FOLDER, CalcJob.exit_codes.ERROR_SCHEDULER_NODE_FAILURE,
           *(TbliteCalculation.exit_codes[label] for label in ("ERROR_MISSING_SUMMARY", "ERROR_CORRUPT_SUMMARY",
                                                              "ERROR_MISSING_OUTPUT_FILE", "ERROR_CORRUPT_OUTPUT")))


def _validate_structure(value, _):
    """The tblite engine's check of the structure (a molecule or cluster), at submission."""
    return ENGINES["tblite"].check_structure(value)


class TbliteBaseWorkChain(ProtocolMixin, SubmitOnce, BaseRestartWorkChain):
    """What the two tblite WorkChains share (see the module doc). Subclasses set ``_process_class`` and
    ``_protocol_tag``."""

    _process_class = TbliteCalculation
    _walltime_factor = 2
    _max_walltime_restarts = 2
    _max_crash_restarts = 1

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(cls._process_class, exclude=("metadata",))
        spec.expose_inputs(cls._process_class, namespace="calc", include=("metadata",),
                           namespace_options={"populate_defaults": True,
                                              "help": "The CalcJob's metadata (options: resources, "
                                                      "max_wallclock_seconds, ...)."})
        spec.inputs.dynamic = spec.inputs["calc"].dynamic = False  # exposing makes them dynamic: no unknown input
        spec.inputs["structure"].validator = _validate_structure
        spec.outline(cls.setup, while_(cls.should_run_process)(cls.run_process, cls.inspect_process), cls.results)
        spec.expose_outputs(cls._process_class)
        for label, code in cls._process_class.spec().exit_codes.items():  # the job's codes are passed on as they are
            spec.exit_code(code.status, label, code.message, code.invalidates_cache)

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, namespace="calc"))
        self.ctx.walltime_restarts = 0
        self.ctx.crash_restarts = 0

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, **task_kwargs):
        """A builder from a level of ``protocols/<_protocol_tag>.yaml``.

        Engine settings (``parameters``) by increasing priority: the protocol's, ``task_kwargs`` (for MD:
        ``ensemble``, ``temperature`` (K), ``steps``, ``timestep`` (fs), ``stride``, ``seed``; ``None`` values
        are left out), ``overrides["parameters"]``.

        :param code: the Code of the ``aiida-irspec`` executable (plugin ``irspec.tblite.*``).
        :param structure: StructureData of a molecule or cluster.
        :param protocol: ``fast``, ``moderate`` or ``precise`` (default: the file's ``default_protocol``), or
            ``LEVEL@NAME`` for a user file.
        :param overrides: dict (or path of a YAML file) mirroring the ports: ``parameters`` (settings of
            ``aiida-irspec engine md`` / ``born-charges``), ``calc.metadata.options``, ``max_iterations``, ...
        :param options: ``metadata.options`` of the CalcJob, merged last (resources, max_wallclock_seconds, ...).
        :param task_kwargs: the task's settings; ``initial_velocities`` (MD): ArrayData ``velocities`` (N, 3) in
            Angstrom/fs.
        :raises InputError: for an unknown protocol, input or setting (with the dotted key).
        """
        velocities = task_kwargs.pop("initial_velocities", None)
        settings = {key: value for key, value in task_kwargs.items() if value is not None}
        inputs = cls.get_protocol_inputs(protocol, recursive_merge({"parameters": settings},
                                                                   overrides_mapping(overrides)))
        if options:
            inputs = recursive_merge(inputs, {"calc": {"metadata": {"options": options}}})
        if velocities is not None:
            inputs["velocities"] = velocities
        builder = cls.get_builder()
        fill_builder(builder, {"code": code, "structure": structure, **inputs})
        return builder

    @process_handler(priority=600, exit_codes=[CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, node):
        """Out of wall time: again from the start with ``_walltime_factor`` times the wall time, at most
        ``_max_walltime_restarts`` times; then the job's 120."""
        walltime = node.get_option("max_wallclock_seconds")
        if not walltime:
            self.report(f"{node.process_label}<{node.pk}> ran out of the scheduler's default wall time: there is "
                        f"no wall time of its own to increase")
            return self._pass_on(node)
        if self.ctx.walltime_restarts >= self._max_walltime_restarts:
            self.report(f"{node.process_label}<{node.pk}> ran out of its wall time ({walltime} s) after "
                        f"{self.ctx.walltime_restarts} restarts with more: giving up")
            return self._pass_on(node)
        self.ctx.walltime_restarts += 1
        metadata = dict(self.ctx.inputs.get("metadata", {}))
        metadata["options"] = {**metadata.get("options", {}),
                               "max_wallclock_seconds": int(self._walltime_factor * walltime)}
        self.ctx.inputs.metadata = metadata
        self.report(f"{node.process_label}<{node.pk}> ran out of its wall time ({walltime} s): running it again "
                    f"with {metadata['options']['max_wallclock_seconds']} s")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=list(CRASHES))
    def handle_crash(self, node):
        """Ended without its outputs (killed, node lost, files cut off): once more unchanged, then its code."""
        if self.ctx.crash_restarts >= self._max_crash_restarts:
            self.report(f"{node.process_label}<{node.pk}> crashed again (exit {node.exit_status}): giving up")
            return self._pass_on(node)
        self.ctx.crash_restarts += 1
        self.report(f"{node.process_label}<{node.pk}> crashed (exit {node.exit_status}: {node.exit_message}): "
                    f"running it once more")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=0)
    def handle_other_failure(self, node):
        """Any other failure (deterministic: the input, the engine, the energy drift): its code, no rerun."""
        if not node.is_failed:
            return None
        return self._pass_on(node)

    def _pass_on(self, node):
        """End with ``node``'s exit code and message, attaching what it made."""
        self.out_many(self.exposed_outputs(node, self._process_class))
        return ProcessHandlerReport(do_break=True, exit_code=ExitCode(node.exit_status, node.exit_message))


class TbliteMdWorkChain(TbliteBaseWorkChain):
    """Molecular dynamics of a molecule or cluster with tblite (Langevin NVT or NVE), restarted on wall time and
    crashes. Outputs those of :class:`~aiida_irspec.calculations.tblite.TbliteMdCalculation`."""

    _process_class = TbliteMdCalculation
    _protocol_tag = "tblite/md"


class TbliteBornChargesWorkChain(TbliteBaseWorkChain):
    """Born effective charges (|e|) of a molecule or cluster from the tblite dipole, restarted on wall time and
    crashes. Outputs those of :class:`~aiida_irspec.calculations.tblite.TbliteBornChargesCalculation`."""

    _process_class = TbliteBornChargesCalculation
    _protocol_tag = "tblite/born_charges"
