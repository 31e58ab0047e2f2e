"""What the VASP WorkChains share: aiida-vasp's ``vasp.v2.vasp`` WorkChain with protocols, k-points and POTCARs
set the irspec way, and the one handler it lacks.

:class:`IrspecVaspWorkChain` is aiida-vasp's :class:`~aiida_vasp.workchains.v2.vasp.VaspWorkChain` (a
BaseRestartWorkChain around the ``vasp.vasp`` CalcJob): its process handlers (a run that did not finish is run
once more; electronic convergence: ALGO, NELM, AMIX; critical VASP errors; missing outputs; the final checks of
the run status) and their switch ``handler_overrides``, its ``potential_family`` / ``potential_mapping`` and
``kpoints_spacing`` inputs, its exit codes (300, 400-405, 500-505, 700-703). Added here:

- ``handle_walltime`` (priority 1050, before aiida-vasp's handlers): the scheduler ended the job for its wall
  time (exit status 120, or aiida-vasp's 700 "did not finish" when the scheduler says so): run again with twice
  the wall time (aiida-vasp's own handler reruns an unfinished job once with the same wall time);
- ``get_builder_from_protocol`` from ``protocols/vasp/<job>.yaml`` (levels fast / moderate / precise, read by the
  package's :class:`~aiida_irspec.workflows.protocols.ProtocolMixin`, which is aiida-vasp's helper);
- exit codes in irspec's VASP range 340-369 (docs/vasp.md), defined by the subclasses.

K-points: ``kpoints_distance`` d is the largest spacing of a Gamma-centred mesh in 1/Angstrom *including* the
2 pi (AiiDA's ``KpointsData.set_kpoints_mesh_from_density(d)``); aiida-vasp's ``kpoints_spacing`` s excludes it
(the WorkChain meshes with ``s * 2 pi``), so ``s = d / (2 pi)``: d = 0.25 / Angstrom is s = 0.0398.
POTCARs: ``potential_mapping`` names the POTCAR of an element (or kind); every other element takes VASP's
recommended POTCAR, the mapping aiida-vasp ships (``aiida_vasp/protocols/vasp.yaml``).
"""

import collections.abc
import math
import os

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler
from aiida.engine.processes.calcjobs.calcjob import CalcJob
from aiida_vasp.calcs.vasp import VaspCalculation
from aiida_vasp.workchains.v2.vasp import VaspWorkChain

from aiida_irspec.exceptions import InputError
from aiida_irspec.workflows.protocols import ProtocolMixin, read_yaml
from aiida_irspec.workflows.resumable import SubmitOnce

WALLTIME = CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status


def recommended_potentials():
    """element -> POTCAR name recommended by VASP, as aiida-vasp ships it."""
    return dict(VaspWorkChain.get_protocol_inputs()["potential_mapping"])


def potential_mapping_for(structure, potential_mapping=None):
    """kind name -> POTCAR name for every kind of ``structure``: the given mapping (by kind name, else element),
    else VASP's recommended POTCAR of the element."""
    chosen, recommended = dict(potential_mapping or {}), recommended_potentials()
    return {kind.name: chosen.get(kind.name, chosen.get(kind.symbol, recommended.get(kind.symbol, kind.symbol)))
            for kind in structure.kinds}


def kpoints_spacing(kpoints_distance):
    """aiida-vasp's ``kpoints_spacing`` (without 2 pi) of our ``kpoints_distance`` (1/Angstrom, with 2 pi)."""
    distance = float(kpoints_distance)
    if not (math.isfinite(distance) and distance > 0):
        raise InputError(f"kpoints_distance must be a positive number of 1/Angstrom, got {kpoints_distance!r}")
    return distance / (2 * math.pi)


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


class IrspecVaspWorkChain(SubmitOnce, ProtocolMixin, VaspWorkChain):
    """aiida-vasp's VaspWorkChain with irspec's protocols and a wall-time handler (see the module doc).

    Subclasses set ``_protocol_tag`` (``vasp/<job>``), ``_own_outputs`` (output ports they fill themselves instead
    of the CalcJob's output of the same name) and implement ``results``.
    """

    _walltime_factor = 2.0
    _own_outputs = ()

    @classmethod
    def define(cls, spec):
        super().define(spec)
        for name in cls._own_outputs:
            del spec.outputs[name]  # the CalcJob's output of that name is replaced by the subclass's own

    @classmethod
    def builder_for(cls, code, structure, incar, settings, inputs, options, *, potential_family,
                    potential_mapping=None, kpoints_distance=None, kpoints=None):
        """The builder parts both WorkChains share.

        :param incar: INCAR tags (any case), written as aiida-vasp's ``parameters = {"incar": ...}``.
        :param settings: aiida-vasp's CalcJob settings (parser settings, ...), updated by ``inputs['settings']``.
        :param inputs: the protocol level merged with the overrides (``kpoints_distance``, ``max_iterations``,
            ``clean_workdir``, ``settings``, ``handler_overrides``).
        :param options: CalcJob options (``resources``, ``max_wallclock_seconds``, ``prepend_text``, ...).
        """
        if not potential_family:
            raise InputError("a potential_family is needed (upload one with `aiida-vasp potcar uploadfamily`)")
        builder = cls.get_builder()
        builder.code = code
        builder.structure = structure
        builder.parameters = orm.Dict({"incar": {str(key).lower(): value for key, value in incar.items()}})
        builder.potential_family = orm.Str(potential_family)
        builder.potential_mapping = orm.Dict(potential_mapping_for(structure, potential_mapping))
        if kpoints is not None:
            builder.kpoints = kpoints
        else:
            builder.kpoints_spacing = orm.Float(kpoints_spacing(kpoints_distance or inputs["kpoints_distance"]))
        builder.settings = orm.Dict({**settings, **(inputs.get("settings") or {})})
        builder.calc.metadata.options = dict(options or {"resources": {"num_machines": 1}})
        builder.max_iterations = orm.Int(inputs["max_iterations"])
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        if inputs.get("handler_overrides"):
            builder.handler_overrides = orm.Dict(inputs["handler_overrides"])
        return builder

    @classmethod
    def protocol_and_overrides(cls, protocol, overrides):
        """(the protocol level merged with every override but the INCAR tags, the INCAR overrides).

        :param overrides: None, a dict mirroring the inputs (``parameters`` holds INCAR tags; ``None`` as a tag's
            value removes it), or the path of a YAML file of one.
        """
        if isinstance(overrides, (str, os.PathLike)):
            overrides = read_yaml(overrides)
        if overrides is not None and not isinstance(overrides, collections.abc.Mapping):
            raise InputError(f"overrides must be a mapping (or the path of a YAML file of one), got "
                             f"{type(overrides).__name__}")
        overrides = dict(overrides or {})
        incar = overrides.pop("parameters", None)
        return cls.get_protocol_inputs(protocol, overrides), incar

    def get_outputs(self, node):
        """The CalcJob's exposed outputs, without those this WorkChain fills itself."""
        return {name: output for name, output in super().get_outputs(node).items() if name not in self._own_outputs}

    def last_calculation(self):
        """The CalcJobNode of the last (successful) iteration."""
        return self.ctx.children[self.ctx.iteration - 1]

    @process_handler(priority=1050, exit_codes=[CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
                                                VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH])
    def handle_walltime(self, node):
        """Out of wall time: run again with twice the wall time, from the killed run's folder when it left
        WAVECAR or CHGCAR."""
        if not killed_for_walltime(node):
            return None
        return self.restart_with_more_walltime(node)

    def restart_with_more_walltime(self, node):
        """Resubmit with ``_walltime_factor`` times the wall time."""
        metadata = self.ctx.inputs.setdefault("metadata", {})
        options = dict(metadata.get("options", {}))
        old = options.get("max_wallclock_seconds") or node.get_option("max_wallclock_seconds")
        if old:
            options["max_wallclock_seconds"] = int(old * self._walltime_factor)
        metadata["options"] = options
        self._setup_restart(node)
        self.report(f"{node.process_label}<{node.pk}> ran out of wall time: restarting with "
                    f"max_wallclock_seconds = {options.get('max_wallclock_seconds')}")
        return ProcessHandlerReport(do_break=True)
