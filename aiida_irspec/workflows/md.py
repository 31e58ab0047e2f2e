"""``irspec.md``: a molecular-dynamics trajectory of a structure with any engine.

In: the common inputs of :mod:`.engine_base` plus ``ensemble`` (``"nvt"`` or ``"nve"``), ``temperature``
(K), ``steps``, ``timestep`` (fs; default from the engine's protocol), ``stride``, ``seed`` and
``initial_velocities`` (ArrayData ``velocities`` (N, 3) Angstrom/fs, e.g. the ``final_velocities`` of an
NVT run to start NVE from). ``MdWorkChain.get_builder_from_protocol`` reads ``protocols/md.yaml``.
Out: ``trajectory`` (TrajectoryData: unwrapped positions, cells, times in fs, velocities in Angstrom/fs;
arrays potential_energy, kinetic_energy (eV), temperature (K); attribute ``units``), ``final_structure``
and ``final_velocities`` of the last frame; ``remote_folder`` (the run folder) when the engine's process has one.
"""

from aiida import orm

from aiida_irspec.workflows.engine_base import EngineWorkChain

ENSEMBLES = ("nvt", "nve")


def _validate_ensemble(value, _):
    if value.value not in ENSEMBLES:
        return f"unknown ensemble {value.value!r}; use one of {', '.join(ENSEMBLES)}"
    return None


def _validate_positive(value, _):
    if value.value <= 0:
        return f"must be positive, got {value.value}"
    return None


class MdWorkChain(EngineWorkChain):
    """NVT or NVE molecular dynamics of a structure, whatever the engine."""

    _task = "md"
    _protocol_tag = "md"
    _task_outputs = (("trajectory", True), ("final_structure", False), ("final_velocities", False),
                     ("remote_folder", False))

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("ensemble", valid_type=orm.Str, default=lambda: orm.Str("nvt"), validator=_validate_ensemble,
                   serializer=orm.to_aiida_type, help="nvt (thermostat of the engine's protocol) or nve.")
        spec.input("temperature", valid_type=(orm.Float, orm.Int), validator=_validate_positive,
                   serializer=orm.to_aiida_type,
                   help="Temperature in K (thermostat target; initial velocities when none are given).")
        spec.input("steps", valid_type=orm.Int, validator=_validate_positive, serializer=orm.to_aiida_type,
                   help="Number of MD steps.")
        spec.input("timestep", valid_type=(orm.Float, orm.Int), required=False, validator=_validate_positive,
                   serializer=orm.to_aiida_type, help="Time step in fs (default: the engine protocol's).")
        spec.input("stride", valid_type=orm.Int, default=lambda: orm.Int(1), validator=_validate_positive,
                   serializer=orm.to_aiida_type, help="Store every stride-th step.")
        spec.input("seed", valid_type=orm.Int, required=False, serializer=orm.to_aiida_type,
                   help="Random seed (velocities, thermostat noise).")
        spec.input("initial_velocities", valid_type=orm.ArrayData, required=False,
                   help="Initial velocities: array 'velocities' (N, 3) in Angstrom/fs, site order.")
        spec.output("trajectory", valid_type=orm.TrajectoryData, help="The stored frames.")
        spec.output("final_structure", valid_type=orm.StructureData, required=False, help="The last frame.")
        spec.output("final_velocities", valid_type=orm.ArrayData, required=False,
                    help="Velocities of the last frame: array 'velocities' (N, 3) in Angstrom/fs.")
        spec.output("remote_folder", valid_type=orm.RemoteData, required=False,
                    help="The engine's run folder, when the engine process gives one (tblite's CalcJob does).")

    def task_kwargs(self):
        kwargs = {"ensemble": self.inputs.ensemble.value, "temperature": float(self.inputs.temperature.value),
                  "steps": self.inputs.steps.value, "stride": self.inputs.stride.value}
        if "timestep" in self.inputs:
            kwargs["timestep"] = float(self.inputs.timestep.value)
        if "seed" in self.inputs:
            kwargs["seed"] = self.inputs.seed.value
        if "initial_velocities" in self.inputs:
            kwargs["initial_velocities"] = self.inputs.initial_velocities
        return kwargs
