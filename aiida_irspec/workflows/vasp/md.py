"""Molecular dynamics with a VASP machine-learned force field (ML_MODE run or train).

:class:`VaspMdWorkChain` (entry point ``irspec.vasp.md``) runs
:class:`~aiida_irspec.calculations.vasp_md.VaspMdCalculation` (aiida-vasp's ``vasp.vasp`` CalcJob
plus initial velocities in POSCAR and ML_FF / ML_AB staging) and turns what VASP writes into

- ``trajectory``: TrajectoryData with unwrapped positions (Angstrom), cells, times (fs), velocities
  (Angstrom/fs, central differences of the positions), arrays ``potential_energy``,
  ``kinetic_energy`` (eV) and ``temperature`` (K); attribute ``units``;
- ``final_structure``: StructureData of CONTCAR;
- ``final_velocities``: ArrayData ``velocities`` (N, 3) Angstrom/fs, VASP's own CONTCAR velocity block
  (the finite-difference velocity of the last frame only when CONTCAR has none).

aiida-vasp's INCAR validator (parsevasp's tag list) refuses the ``ML_*`` tags; its CalcJob skips the
validation when ``settings['skip_parameters_validation']`` is true, and that is what the builder sets.
aiida-vasp's parser is told not to flag NSW reached as "ionic relaxation not converged" and, for
``ML_MODE = run`` (no electronic steps), not to judge electronic convergence.
"""

import numpy as np
from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

from aiida_irspec.calculations.vasp_md import VaspMdCalculation
from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.engines.vasp import md_incar
from aiida_irspec.exceptions import InputError, MalformedFileError
from aiida_irspec.io.vasp import kinetic_energy_of, read_final_velocities, read_trajectory, temperature_from_kinetic
from aiida_irspec.workflows.protocols import load_protocol
from aiida_irspec.workflows.vasp.base import VaspRestartWorkChain, killed_for_walltime

RETRIEVE = ["XDATCAR", "OSZICAR", "REPORT", "ML_LOGFILE", "ML_ABN", "ML_FFN"]
UNITS = {"positions": "Angstrom", "cells": "Angstrom", "times": "fs", "velocities": "Angstrom/fs",
         "potential_energy": "eV", "kinetic_energy": "eV", "temperature": "K"}


def parser_settings(ml_mode):
    """aiida-vasp parser settings of an MD run."""
    settings = {"check_ionic_convergence": False, "critical_objects": ["OUTCAR"], "check_completeness": False}
    if ml_mode == "run":
        settings["check_errors"] = False
    return settings


def trajectory_arrays(folder, parameters):
    """(VaspTrajectory, final velocities (N, 3) or None, final ase.Atoms or None) from a retrieved folder path.

    vasprun.xml first (every stored step, DFT and machine-learned, with energies and POTIM); XDATCAR when there
    is no readable vasprun.xml (positions only; POTIM from the INCAR ``parameters``). None when neither reads.
    """
    from ase.io import read

    names = {path.name for path in folder.iterdir()}
    potim = float(parameters.get("POTIM", parameters.get("potim", 0.5)))  # the run's INCAR: agrees with the file
    trajectory = None
    if "vasprun.xml" in names:
        try:
            trajectory = read_trajectory(folder / "vasprun.xml", timestep=potim)
        except MalformedFileError:
            trajectory = None
    if trajectory is None and "XDATCAR" in names:
        trajectory = read_trajectory(folder / "XDATCAR", timestep=potim)
    final_velocities, final_atoms = None, None
    if "CONTCAR" in names:
        final_atoms = read(folder / "CONTCAR", format="vasp")
        final_velocities = read_final_velocities(folder / "CONTCAR")
    return trajectory, final_velocities, final_atoms


@versioned_calcfunction
def trajectory_from_vasp(retrieved, parameters):
    """Trajectory, final structure and final velocities of a VASP MD run (see the module doc)."""
    with retrieved.base.repository.as_path() as folder:
        trajectory, final_velocities, final_atoms = trajectory_arrays(folder, parameters.get_dict())
    if trajectory is None:
        raise MalformedFileError("retrieved", None, "MD frames in vasprun.xml or XDATCAR")
    problem = trajectory.velocity_problem()
    velocities = None if problem else trajectory.velocities()
    node = orm.TrajectoryData()
    node.set_trajectory(symbols=trajectory.symbols, positions=trajectory.positions, cells=trajectory.cells,
                        times=trajectory.times, velocities=velocities, stepids=trajectory.steps)
    node.set_array("origin", trajectory.origin)
    kinetic = trajectory.kinetic_energy
    if kinetic is None and velocities is not None:
        kinetic = kinetic_energy_of(velocities, trajectory.masses)
    if kinetic is not None:
        node.set_array("kinetic_energy", kinetic)
        node.set_array("temperature", temperature_from_kinetic(kinetic, len(trajectory.numbers)))
    if trajectory.energy is not None:
        node.set_array("potential_energy", trajectory.energy)
    source = {key: value for key, value in trajectory.source.items() if value is not None}
    source["kinetic_energy"] = ("VASP" if trajectory.kinetic_energy is not None else
                                "finite-difference velocities" if kinetic is not None else "none")
    node.base.attributes.set("units", UNITS)
    node.base.attributes.set("source", source)
    node.base.attributes.set("velocities_from", "central differences of the unwrapped positions" if problem is None
                             else f"none: {problem}")
    if final_velocities is None and velocities is not None:
        final_velocities = velocities[-1]
        velocity_source = "finite difference (CONTCAR has no velocity block)"
    else:
        velocity_source = "CONTCAR"
    outputs = {"trajectory": node}
    if final_velocities is not None:
        final = orm.ArrayData({"velocities": final_velocities})
        final.base.attributes.set("units", "Angstrom/fs")
        final.base.attributes.set("source", velocity_source)
        outputs["final_velocities"] = final
    if final_atoms is not None:
        outputs["final_structure"] = orm.StructureData(ase=final_atoms)
    return outputs


class VaspMdWorkChain(VaspRestartWorkChain):
    """MLFF molecular dynamics with VASP (NVT or NVE), returning an unwrapped trajectory with velocities."""

    _process_class = VaspMdCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("trajectory", valid_type=orm.TrajectoryData,
                    help="Unwrapped positions, cells, times (fs), velocities (A/fs), energies (eV), temperature (K).")
        spec.output("final_structure", valid_type=orm.StructureData, required=False,
                    help="The structure at the end of the run (CONTCAR).")
        spec.output("final_velocities", valid_type=orm.ArrayData,
                    help="Array 'velocities' (N, 3) A/fs at the end of the run.")
        spec.output_namespace("ml", valid_type=orm.SinglefileData, dynamic=True, required=False,
                              help="ML_ABN / ML_FFN written by an on-the-fly training run.")
        spec.exit_code(330, "ERROR_NO_TRAJECTORY",
                       message="The run finished but neither vasprun.xml nor XDATCAR holds MD frames.")
        spec.exit_code(331, "ERROR_WRONG_NUMBER_OF_IONS",
                       message="The trajectory has {found} ions but the structure has {expected}.")

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol="moderate", overrides=None, options=None, *,
                                  ensemble="nvt", temperature=300.0, steps=1000, timestep=None, stride=1, seed=None,
                                  initial_velocities=None, ml_ff=None, ml_ab=None, ml_mode=None, thermostat=None,
                                  potential_family=None, potential_mapping=None, kpoints_distance=None,
                                  kpoints=None):
        """A builder filled from a protocol level of ``protocols/vasp/md.yaml``.

        :param ensemble: ``"nvt"`` or ``"nve"``; ``thermostat`` (NVT): ``"nose-hoover"`` | ``"langevin"``.
        :param temperature: K; ``steps``: NSW; ``timestep``: POTIM in fs (None: the protocol's);
            ``stride``: ML_OUTBLOCK.
        :param seed: VASP random seed (initial velocities when none are given, Langevin noise).
        :param initial_velocities: ArrayData ``velocities`` (N, 3) A/fs or a (N, 3) array, written to POSCAR.
        :param ml_ff: SinglefileData or RemoteData (path of the file) of a force field: ML_MODE = run.
        :param ml_ab: SinglefileData ML_AB to continue training from.
        :param ml_mode: ``"run"`` or ``"train"``; default ``run`` with an ``ml_ff``, else ``train``.
        :param overrides: dict with any of ``parameters`` (INCAR tags; ``None`` removes one),
            ``kpoints_distance``, ``settings``, ``max_iterations``, ``clean_workdir``.
        """
        inputs = load_protocol("vasp", "md", protocol)
        overrides = dict(overrides or {})
        ml_mode = ml_mode or ("run" if ml_ff is not None else "train")
        if ml_mode == "run" and ml_ff is None:
            raise InputError("ML_MODE = run needs a force field: give ml_ff (SinglefileData or RemoteData)")
        timestep = inputs["timestep"] if timestep is None else timestep
        tags = md_incar(inputs, ensemble=ensemble, temperature=temperature, steps=steps, timestep=timestep,
                        stride=stride, seed=seed, ml_mode=ml_mode, thermostat=thermostat,
                        n_species=_n_poscar_species(structure),
                        overrides=overrides.get("parameters"))
        settings = {"parser_settings": parser_settings(ml_mode), "skip_parameters_validation": True,
                    "ADDITIONAL_RETRIEVE_LIST": RETRIEVE}
        builder = cls.builder_for(code, structure, tags, settings, inputs, overrides, options,
                                  potential_family=potential_family, potential_mapping=potential_mapping,
                                  kpoints_distance=kpoints_distance, kpoints=kpoints)
        if initial_velocities is not None:
            if not isinstance(initial_velocities, orm.ArrayData):
                initial_velocities = orm.ArrayData({"velocities": np.asarray(initial_velocities, dtype=float)})
            shape = initial_velocities.get_shape("velocities")
            if shape != (len(structure.sites), 3):
                raise InputError(f"initial_velocities must be ({len(structure.sites)}, 3) Angstrom/fs, got {shape}")
            builder.vasp.velocities = initial_velocities
        if ml_ff is not None:
            builder.vasp.ml_ff = ml_ff
        if ml_ab is not None:
            builder.vasp.ml_ab = ml_ab
        return builder

    @process_handler(priority=700)
    def handle_unchecked_unfinished(self, node):
        """With ML_MODE = run aiida-vasp's error checks are off (no electronic steps to judge), so a run that
        VASP did not finish still ends with 0: restart it for its wall time, or stop with 311."""
        if not node.is_finished_ok or "misc" not in node.outputs:
            return None
        if node.outputs.misc.get_dict().get("run_status", {}).get("finished", True):
            return None
        if killed_for_walltime(node):
            return self.restart_with_more_walltime(node)
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_CALCULATION_UNFINISHED)

    def results(self):
        """Trajectory, final structure and velocities of the last run; ML_ABN / ML_FFN when trained."""
        node = self.last_calculation()
        self.attach_misc(node)
        retrieved = node.outputs.retrieved
        try:
            outputs = trajectory_from_vasp(retrieved, node.inputs.parameters)
        except MalformedFileError as error:
            self.report(f"{node.process_label}<{node.pk}>: {error}")
            return self.exit_codes.ERROR_NO_TRAJECTORY
        found, expected = outputs["trajectory"].numsites, len(self.inputs.vasp.structure.sites)
        if found != expected:
            return self.exit_codes.ERROR_WRONG_NUMBER_OF_IONS.format(found=found, expected=expected)
        self.out_many(outputs)
        names = retrieved.base.repository.list_object_names()
        for name in ("ML_ABN", "ML_FFN"):
            if name in names:
                self.out(f"ml.{name}", _retrieved_file(retrieved, orm.Str(name)))
        self.report(f"work chain completed after {self.ctx.iteration} iterations")
        return None


def _n_poscar_species(structure):
    """Number of species blocks in the POSCAR aiida-vasp writes (consecutive equal kinds grouped)."""
    names = [site.kind_name for site in structure.sites]
    return 1 + sum(1 for left, right in zip(names, names[1:]) if left != right)


@versioned_calcfunction
def _retrieved_file(retrieved, name):
    """A retrieved file as SinglefileData (keeps its provenance)."""
    with retrieved.base.repository.open(name.value, "rb") as handle:
        return orm.SinglefileData(handle, filename=name.value)
