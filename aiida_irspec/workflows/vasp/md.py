"""Molecular dynamics with a VASP machine-learned force field (ML_MODE run or train).

:class:`VaspMdWorkChain` (entry point ``irspec.vasp.md``) is aiida-vasp's ``vasp.v2.vasp`` WorkChain (:mod:`.base`)
running :class:`~aiida_irspec.calculations.vasp_md.VaspMdCalculation` (aiida-vasp's ``vasp.vasp`` CalcJob plus
initial velocities in POSCAR and ML_FF / ML_AB staging), with aiida-vasp's handlers, and turns what VASP writes
into

- ``trajectory``: TrajectoryData of every step vasprun.xml stores (ab-initio and machine-learned: read by
  :func:`aiida_irspec.io.vasp.read_trajectory`; XDATCAR when there is no readable vasprun.xml) with unwrapped
  positions (Angstrom), cells, times (fs, from the file's POTIM), step ids, velocities (Angstrom/fs, central
  differences of the positions, only when the frames are evenly spaced), arrays ``origin`` ("dft" / "ml" per
  frame), ``potential_energy``, ``kinetic_energy`` (eV) and ``temperature`` (K); attributes ``units`` and
  ``source`` (file, format, layout, VASP version, notes);
- ``final_structure``: StructureData of CONTCAR;
- ``final_velocities``: ArrayData ``velocities`` (N, 3) Angstrom/fs, VASP's own CONTCAR velocity block
  (the finite-difference velocity of the last frame only when CONTCAR has none).

aiida-vasp's INCAR validation (parsevasp's tag list, at the ``parameters`` port and in the CalcJob) refuses the
``ML_*`` tags: the port keeps aiida-vasp's checks but the tag list, and the CalcJob skips it
(``settings['skip_parameters_validation']``). aiida-vasp's parser is told not to flag NSW reached as "ionic
relaxation not converged"; for ``ML_MODE = run`` (no electronic steps) its error checks and the WorkChain's
electronic-convergence check are off, and a run VASP did not finish is caught here (wall time: restart; else
aiida-vasp's 502).
"""

import numpy as np
from aiida import orm
from aiida.common.exceptions import InputValidationError
from aiida.engine import process_handler

from aiida_irspec.calculations.vasp_md import VaspMdCalculation
from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.engines.vasp import md_incar
from aiida_irspec.exceptions import InputError, IrspecError, MalformedFileError
from aiida_irspec.io.vasp import kinetic_energy_of, read_final_velocities, read_trajectory, temperature_from_kinetic
from aiida_irspec.workflows.vasp.base import IrspecVaspWorkChain, killed_for_walltime

RETRIEVE = ["XDATCAR", "OSZICAR", "REPORT", "ML_LOGFILE", "ML_ABN", "ML_FFN"]
UNITS = {"positions": "Angstrom", "cells": "Angstrom", "times": "fs", "velocities": "Angstrom/fs",
         "potential_energy": "eV", "kinetic_energy": "eV", "temperature": "K"}


def parameters_validator(node, port=None):
    """aiida-vasp's check of the ``parameters`` port (lower-case keys, an ``incar`` namespace, its massager)
    without parsevasp's list of INCAR tags, which lacks the ``ML_*`` tags."""
    from aiida_vasp.assistant.parameters import ParametersMassage

    if not node:
        return
    parameters = node.get_dict()
    if "incar" not in parameters:
        raise InputValidationError("the INCAR tags go under the key 'incar' of parameters")
    try:
        ParametersMassage({"incar": parameters["incar"]}, skip_parameters_validation=True)
    except Exception as error:  # noqa: BLE001 - aiida-vasp's massager raises many kinds
        raise InputValidationError(f"cannot validate the input parameters: {error}") from None


def parser_settings(ml_mode):
    """aiida-vasp parser settings of an MD run: no file is critical (the WorkChain reads the steps from
    vasprun.xml, OUTCAR or XDATCAR, whichever holds them) and only the run status is required (from vasprun.xml
    or OUTCAR; the run statistics are OUTCAR's alone); NSW reached is no failed relaxation."""
    settings = {"check_ionic_convergence": False, "critical_objects": [], "check_completeness": False,
                "required_quantity": ["run_status"]}
    if ml_mode == "run":
        settings["check_errors"] = False
    return settings


#: Files the steps are read from, in order of preference (see :func:`trajectory_arrays`).
TRAJECTORY_FILES = ("vasprun.xml", "OUTCAR", "XDATCAR")


def trajectory_arrays(folder, parameters):
    """(VaspTrajectory, final velocities (N, 3) or None, final ase.Atoms or None) from a retrieved folder path.

    The steps come from the first of vasprun.xml (every stored step, DFT and machine-learned, with energies),
    OUTCAR and XDATCAR that reads and holds an evenly spaced series of steps; when none does, from the first
    that reads (then without velocities). POTIM from the INCAR ``parameters`` (it must agree with the file's).
    The trajectory is None when no file reads; the error of the last file that did not read is raised when
    none of them exists readable and one was there.
    """
    from ase.io import read

    names = {path.name for path in folder.iterdir()}
    potim = float(parameters.get("POTIM", parameters.get("potim", 0.5)))
    readable, error = [], None
    for name in TRAJECTORY_FILES:
        if name in names:
            try:
                readable.append(read_trajectory(folder / name, timestep=potim))
            except IrspecError as problem:  # malformed, or times that disagree with the run's POTIM
                error = problem
    if not readable and error is not None:
        raise error
    even = [trajectory for trajectory in readable if trajectory.spacing_problem() is None]
    trajectory = (even or readable or [None])[0]
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


class VaspMdWorkChain(IrspecVaspWorkChain):
    """MLFF molecular dynamics with VASP (NVT or NVE), returning every stored step as an unwrapped trajectory."""

    _process_class = VaspMdCalculation
    _protocol_tag = "vasp/md"
    _own_outputs = ("trajectory",)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs["parameters"].validator = parameters_validator
        spec.output("trajectory", valid_type=orm.TrajectoryData,
                    help="Every stored step: unwrapped positions, cells, times (fs), origin (dft/ml), velocities "
                         "(A/fs, evenly spaced frames only), energies (eV), temperature (K).")
        spec.output("final_structure", valid_type=orm.StructureData, required=False,
                    help="The structure at the end of the run (CONTCAR).")
        spec.output("final_velocities", valid_type=orm.ArrayData, required=False,
                    help="Array 'velocities' (N, 3) A/fs at the end of the run.")
        spec.output_namespace("ml", valid_type=orm.SinglefileData, dynamic=True, required=False,
                              help="ML_ABN / ML_FFN written by an on-the-fly training run.")
        spec.exit_code(343, "ERROR_NO_TRAJECTORY",
                       message="The run finished but neither vasprun.xml nor XDATCAR holds MD frames.")
        spec.exit_code(341, "ERROR_WRONG_NUMBER_OF_IONS",
                       message="The trajectory has {found} ions but the structure has {expected}.")

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  ensemble="nvt", temperature=300.0, steps=1000, timestep=None, stride=1, seed=None,
                                  initial_velocities=None, ml_ff=None, ml_ab=None, ml_mode=None, thermostat=None,
                                  potential_family=None, potential_mapping=None, kpoints_distance=None,
                                  kpoints=None, **_):
        """A builder filled from a protocol level of ``protocols/vasp/md.yaml``.

        :param ensemble: ``"nvt"`` or ``"nve"``; ``thermostat`` (NVT): ``"nose-hoover"`` | ``"langevin"``.
        :param temperature: K; ``steps``: NSW; ``timestep``: POTIM in fs (None: the protocol's);
            ``stride``: ML_OUTBLOCK.
        :param seed: VASP random seed (initial velocities when none are given, Langevin noise).
        :param initial_velocities: ArrayData ``velocities`` (N, 3) A/fs or a (N, 3) array, written to POSCAR.
        :param ml_ff: SinglefileData or RemoteData (path of the file) of a force field: ML_MODE = run.
        :param ml_ab: SinglefileData ML_AB to continue training from.
        :param ml_mode: ``"run"`` or ``"train"``; default ``run`` with an ``ml_ff``, else ``train``.
        :param overrides: dict (or YAML file) with any of ``parameters`` (INCAR tags; ``None`` removes one),
            ``kpoints_distance``, ``settings``, ``max_iterations``, ``clean_workdir``, ``handler_overrides``.
        :param potential_family, potential_mapping, kpoints_distance, kpoints: as for the Born-charge WorkChain.
        """
        inputs, incar = cls.protocol_and_overrides(protocol, overrides)
        ml_mode = ml_mode or ("run" if ml_ff is not None else "train")
        if ml_mode == "run" and ml_ff is None:
            raise InputError("ML_MODE = run needs a force field: give ml_ff (SinglefileData or RemoteData)")
        timestep = inputs["timestep"] if timestep is None else timestep
        tags = md_incar(inputs, ensemble=ensemble, temperature=temperature, steps=steps, timestep=timestep,
                        stride=stride, seed=seed, ml_mode=ml_mode, thermostat=thermostat,
                        n_species=_n_poscar_species(structure), overrides=incar)
        settings = {"parser_settings": parser_settings(ml_mode), "skip_parameters_validation": True,
                    "ADDITIONAL_RETRIEVE_LIST": RETRIEVE, "CHECK_IONIC_CONVERGENCE": False}
        if ml_mode == "run":  # no electronic steps to judge
            inputs["handler_overrides"] = {"check_electronic_converged": False,
                                           **(inputs.get("handler_overrides") or {})}
        builder = cls.builder_for(code, structure, tags, settings, inputs, options,
                                  potential_family=potential_family, potential_mapping=potential_mapping,
                                  kpoints_distance=kpoints_distance, kpoints=kpoints)
        if initial_velocities is not None:
            if not isinstance(initial_velocities, orm.ArrayData):
                initial_velocities = orm.ArrayData({"velocities": np.asarray(initial_velocities, dtype=float)})
            shape = initial_velocities.get_shape("velocities")
            if shape != (len(structure.sites), 3):
                raise InputError(f"initial_velocities must be ({len(structure.sites)}, 3) Angstrom/fs, got {shape}")
            builder.velocities = initial_velocities
        if ml_ff is not None:
            builder.ml_ff = ml_ff
        if ml_ab is not None:
            builder.ml_ab = ml_ab
        return builder

    @process_handler(priority=5)
    def handle_unchecked_unfinished(self, node):
        """With ML_MODE = run aiida-vasp's parser checks are off (no electronic steps to judge), so a run VASP
        did not finish can end with 0: restart it for its wall time; otherwise aiida-vasp's check that follows
        stops with 502."""
        if not node.is_finished_ok or "misc" not in node.outputs:
            return None
        if node.outputs.misc.get_dict().get("run_status", {}).get("finished", True):
            return None
        if killed_for_walltime(node):
            return self.restart_with_more_walltime(node)
        return None

    def results(self):
        """aiida-vasp's outputs of the last run; trajectory, final structure and velocities; ML_ABN / ML_FFN."""
        super().results()
        node = self.last_calculation()
        retrieved = node.outputs.retrieved
        with retrieved.base.repository.as_path() as folder:
            try:
                trajectory = trajectory_arrays(folder, node.inputs.parameters.get_dict())[0]
            except IrspecError as error:
                self.report(f"{node.process_label}<{node.pk}>: {error}")
                return self.exit_codes.ERROR_NO_TRAJECTORY
        if trajectory is None:
            self.report(f"{node.process_label}<{node.pk}> left neither a readable vasprun.xml nor an XDATCAR")
            return self.exit_codes.ERROR_NO_TRAJECTORY
        found, expected = len(trajectory.numbers), len(self.inputs.structure.sites)
        if found != expected:
            return self.exit_codes.ERROR_WRONG_NUMBER_OF_IONS.format(found=found, expected=expected)
        for note in trajectory.source.get("notes", []):
            self.report(f"{node.process_label}<{node.pk}>: {note}")
        self.out_many(trajectory_from_vasp(retrieved, node.inputs.parameters))
        names = retrieved.base.repository.list_object_names()
        for name in ("ML_ABN", "ML_FFN"):
            if name in names:
                self.out(f"ml.{name}", _retrieved_file(retrieved, orm.Str(name)))
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
