"""What the VASP WorkChains share: potentials and k-points, and the restart handlers.

:class:`VaspRestartWorkChain` is a BaseRestartWorkChain around an aiida-vasp VASP CalcJob
(``_process_class``), with the CalcJob's inputs exposed in the namespace ``vasp``. Handlers:

- walltime (scheduler exit code 120, or aiida-vasp's 700 "did not finish" when the scheduler says the
  job hit its wall time): resubmit with twice the wall time, restarting from the killed run's folder
  (aiida-vasp copies its WAVECAR / CHGCAR when they exist);
- electronic non-convergence (701): ALGO Fast -> Normal, then NELM doubled (>= 120, <= 400), then
  ALGO = All (:func:`aiida_irspec.engines.vasp.next_electronic_fix`); when nothing is left: exit 312;
- every other failure ends the WorkChain with a documented exit code (311 unfinished, 313 critical
  VASP error, 310 any other failure of the calculation).
"""

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_
from aiida.engine.processes.calcjobs.calcjob import CalcJob
from aiida_vasp.calcs.vasp import VaspCalculation

from aiida_irspec.engines.vasp import next_electronic_fix
from aiida_irspec.exceptions import InputError
from aiida_irspec.workflows.resumable import SubmitOnce

WALLTIME = CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status


def potentials_for(structure, potential_family, potential_mapping=None):
    """PotcarData per kind of ``structure`` from a potential family uploaded with ``aiida-vasp potcar uploadfamily``.

    :param potential_mapping: element or kind name -> POTCAR name (e.g. ``{"Zr": "Zr_sv", "O": "O_s"}``);
        missing kinds use the element's plain name.
    """
    from aiida.plugins import DataFactory

    if not potential_family:
        raise InputError("a potential_family is needed (upload one with `aiida-vasp potcar uploadfamily`)")
    chosen = dict(potential_mapping or {})
    mapping = {kind.name: chosen.get(kind.name, chosen.get(kind.symbol, kind.symbol)) for kind in structure.kinds}
    return DataFactory("vasp.potcar").get_potcars_from_structure(structure, potential_family, mapping=mapping)


def kpoints_for(structure, kpoints_distance):
    """A Gamma-centred mesh with spacing at most ``kpoints_distance`` (1/Angstrom, including 2 pi)."""
    kpoints = orm.KpointsData()
    kpoints.set_cell_from_structure(structure)
    kpoints.set_kpoints_mesh_from_density(float(kpoints_distance))
    return kpoints


def killed_for_walltime(node):
    """True when the scheduler ended ``node`` for its wall time (also when aiida-vasp's parser replaced 120)."""
    if node.exit_status == WALLTIME:
        return True
    try:
        scheduler = node.computer.get_scheduler()
        exit_code = scheduler.parse_output(node.get_detailed_job_info(), node.get_scheduler_stdout() or "",
                                           node.get_scheduler_stderr() or "")
    except Exception:  # noqa: BLE001 - a scheduler without output parsing (core.direct) cannot tell
        return False
    return exit_code is not None and exit_code.status == WALLTIME


class VaspRestartWorkChain(SubmitOnce, BaseRestartWorkChain):
    """BaseRestartWorkChain around an aiida-vasp VASP CalcJob with the handlers listed in the module doc.

    Subclasses set ``_process_class`` and implement ``results``.
    """

    _process_class = VaspCalculation
    _walltime_factor = 2.0

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace="vasp")
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.output("misc", valid_type=orm.Dict, required=False,
                    help="aiida-vasp's summary of the last VASP run (energies, run status, notifications).")
        spec.exit_code(310, "ERROR_CALCULATION_FAILED",
                       message="The VASP calculation failed with exit status {status}: {message}")
        spec.exit_code(311, "ERROR_CALCULATION_UNFINISHED",
                       message="VASP did not reach the end of the run (cut off, crashed or killed, not for its "
                               "wall time).")
        spec.exit_code(312, "ERROR_ELECTRONIC_NOT_CONVERGED",
                       message="The electronic self-consistency did not converge after every fix was tried.")
        spec.exit_code(313, "ERROR_VASP_CRITICAL_ERROR", message="VASP reported a critical error: {message}")

    @classmethod
    def builder_for(cls, code, structure, tags, settings, protocol_inputs, overrides, options, *, potential_family,
                    potential_mapping=None, kpoints_distance=None, kpoints=None):
        """The builder parts both WorkChains share: code, structure, INCAR ``tags``, POTCARs, k-points,
        aiida-vasp ``settings`` (updated by ``overrides['settings']``), options, max_iterations, clean_workdir.

        :param protocol_inputs: the merged protocol level (``kpoints_distance``, ``max_iterations``).
        :param overrides: dict; ``kpoints_distance``, ``settings``, ``max_iterations``, ``clean_workdir`` are used.
        """
        builder = cls.get_builder()
        builder.vasp.code = code
        builder.vasp.structure = structure
        builder.vasp.parameters = orm.Dict(tags)
        builder.vasp.potential = potentials_for(structure, potential_family, potential_mapping)
        distance = overrides.get("kpoints_distance", kpoints_distance or protocol_inputs["kpoints_distance"])
        builder.vasp.kpoints = kpoints if kpoints is not None else kpoints_for(structure, distance)
        builder.vasp.settings = orm.Dict({**settings, **overrides.get("settings", {})})
        builder.vasp.metadata.options = dict(options or {"resources": {"num_machines": 1}})
        builder.max_iterations = orm.Int(overrides.get("max_iterations", protocol_inputs["max_iterations"]))
        if "clean_workdir" in overrides:
            builder.clean_workdir = orm.Bool(overrides["clean_workdir"])
        return builder

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, "vasp"))

    def _restart_from(self, node):
        """Restart the next run from ``node``'s folder (aiida-vasp copies WAVECAR / CHGCAR if present)."""
        if "remote_folder" in node.outputs:
            self.ctx.inputs.restart_folder = node.outputs.remote_folder

    @process_handler(priority=600, exit_codes=[CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
                                               VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH])
    def handle_walltime(self, node):
        """Out of wall time: twice the wall time, restart from the killed run's folder."""
        if not killed_for_walltime(node):
            return None
        return self.restart_with_more_walltime(node)

    def restart_with_more_walltime(self, node):
        """Resubmit with ``_walltime_factor`` times the wall time, from ``node``'s folder."""
        options = dict(self.ctx.inputs.get("metadata", {}).get("options", {}))
        old = options.get("max_wallclock_seconds") or node.get_option("max_wallclock_seconds")
        if old:
            options["max_wallclock_seconds"] = int(old * self._walltime_factor)
        self.ctx.inputs.setdefault("metadata", {})["options"] = options
        self._restart_from(node)
        self.report(f"{node.process_label}<{node.pk}> ran out of wall time: restarting with "
                    f"max_wallclock_seconds = {options.get('max_wallclock_seconds')}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=[VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH])
    def handle_unfinished(self, node):
        """VASP stopped before the end for another reason than the wall time: give up (311)."""
        self.report(f"{node.process_label}<{node.pk}> did not finish and not for its wall time: aborting")
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_CALCULATION_UNFINISHED)

    @process_handler(priority=400, exit_codes=[VaspCalculation.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED])
    def handle_electronic_convergence(self, node):
        """Electronic non-convergence: apply the next fix of :func:`next_electronic_fix`, or give up (312)."""
        fix = next_electronic_fix(node.inputs.parameters.get_dict())
        if fix is None:
            self.report(f"{node.process_label}<{node.pk}> not converged electronically and no fix is left")
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED)
        tags, description = fix
        self.ctx.inputs.parameters = orm.Dict(tags)
        self.report(f"{node.process_label}<{node.pk}> not converged electronically: restarting with {description}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=300, exit_codes=[VaspCalculation.exit_codes.ERROR_VASP_CRITICAL_ERROR])
    def handle_critical_error(self, node):
        """A critical VASP error (aiida-vasp's 703): give up (313) with VASP's message."""
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_VASP_CRITICAL_ERROR.format(
            message=node.exit_message or "unknown"))

    @process_handler(priority=0)
    def handle_other_failure(self, node):
        """Any other failed calculation: give up (310) with its exit status and message."""
        if not node.is_failed:
            return None
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_CALCULATION_FAILED.format(
            status=node.exit_status, message=node.exit_message or ""))

    def last_calculation(self):
        """The CalcJobNode of the last (successful) iteration."""
        return self.ctx.children[self.ctx.iteration - 1]

    def attach_misc(self, node):
        if "misc" in node.outputs:
            self.out("misc", node.outputs.misc)
