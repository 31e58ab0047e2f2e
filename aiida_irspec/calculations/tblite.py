"""CalcJobs that run the embedded engine (tblite GFN2-xTB) on any AiiDA Computer.

Both run the package's own command, ``aiida-irspec engine born-charges`` or ``aiida-irspec engine md``
(:mod:`aiida_irspec.cli.engine`), through a Code that points at the ``aiida-irspec`` executable of an
environment where aiida-irspec is installed (on ``localhost`` with the ``core.direct`` scheduler, or on a
SLURM cluster the same way). Inputs and outputs are files: ``structure.extxyz``, ``settings.json`` and
``velocities.npy`` in; ``born_charges.npz`` or ``trajectory.npz`` and ``summary.json`` out, parsed by
:mod:`aiida_irspec.parsers.tblite`.

Exit codes (both CalcJobs; the tblite range is 310-339, docs/engines.md; 120 and the other scheduler codes are
kept as the scheduler set them):

=====  =============================  =====================================================================
 310   ERROR_MISSING_SUMMARY          summary.json was not retrieved (the command did not run or crashed)
 311   ERROR_CORRUPT_SUMMARY          summary.json is not a JSON summary of the engine command
 312   ERROR_MISSING_OUTPUT_FILE      the summary says success but the npz output is missing
 313   ERROR_CORRUPT_OUTPUT           the npz output cannot be read or has the wrong arrays or shapes
 320   ERROR_INVALID_INPUT            the engine refused the input (structure or settings)
 321   ERROR_PERIODIC_CELL            Born charges (or dipoles) were asked of a periodic cell
 322   ERROR_ENGINE_FAILED            tblite failed (SCF not converged, atoms too close, MD diverged)
 323   ERROR_ENERGY_DRIFT             NVE energy not conserved: time step too large (outputs still attached)
=====  =============================  =====================================================================

Run them through the WorkChains of :mod:`aiida_irspec.workflows.tblite` (same entry-point names in
``aiida.workflows``), which build them from the protocols and rerun them after a wall-time kill or a crash.
"""

import io
import json

import numpy as np
from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

from aiida_irspec import NUMERICS_VERSION
from aiida_irspec.engines import jobs
from aiida_irspec.settings import unknown_settings

def _validate_settings(defaults):
    def validator(value, _):
        return unknown_settings(value.get_dict(), defaults)

    return validator


def _write_structure(folder, structure):
    """The structure as extxyz (positions in Angstrom, cell, pbc)."""
    import ase.io

    handle = io.StringIO()
    ase.io.write(handle, structure.get_ase(), format="extxyz")
    folder.create_file_from_filelike(io.StringIO(handle.getvalue()), jobs.STRUCTURE_FILE, mode="w", encoding="utf8")


def _validate_velocities(inputs, _):
    """Initial velocities must hold an array 'velocities' of shape (number of sites, 3)."""
    if "velocities" not in inputs or "structure" not in inputs:
        return None
    if "velocities" not in inputs["velocities"].get_arraynames():
        return "the velocities input must hold an array named 'velocities'"
    shape = inputs["velocities"].get_shape("velocities")
    n_sites = len(inputs["structure"].sites)
    if tuple(shape) != (n_sites, 3):
        return f"velocities must have shape ({n_sites}, 3) in Angstrom/fs, got {tuple(shape)}"
    return None


class TbliteCalculation(CalcJob):
    """What the two tblite CalcJobs share: inputs, files, exit codes. Subclasses set the job."""

    CACHE_VERSION = NUMERICS_VERSION  # the job runs the package's engine: its results change with the numerics
    _engine_command = None  # "born-charges" | "md"
    _engine_output = None
    _engine_defaults = None

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The structure (a molecule or cluster for "
                   "Born charges: non-periodic).")
        spec.input("parameters", valid_type=orm.Dict, required=False,
                   validator=_validate_settings(cls._engine_defaults),
                   help=f"Engine settings (the JSON of `aiida-irspec engine {cls._engine_command}`); "
                        f"defaults: {cls._engine_defaults}.")
        spec.inputs["metadata"]["options"]["resources"].default = {"num_machines": 1,
                                                                   "num_mpiprocs_per_machine": 1}
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        spec.input("metadata.options.output_filename", valid_type=str, default="aiida.out")
        spec.output("misc", valid_type=orm.Dict, help="The engine's JSON summary (settings, timings, checks).")
        # a crash or a damaged file is no result: never a cache source (a rerun computes again)
        spec.exit_code(310, "ERROR_MISSING_SUMMARY", message="summary.json was not retrieved: the engine "
                       "command did not run or crashed (see the retrieved aiida.out / aiida.err).",
                       invalidates_cache=True)
        spec.exit_code(311, "ERROR_CORRUPT_SUMMARY", message="summary.json cannot be read: {error}",
                       invalidates_cache=True)
        spec.exit_code(312, "ERROR_MISSING_OUTPUT_FILE",
                       message="the engine reported success but {filename} is missing.", invalidates_cache=True)
        spec.exit_code(313, "ERROR_CORRUPT_OUTPUT", message="{filename} cannot be read: {error}",
                       invalidates_cache=True)
        spec.exit_code(320, "ERROR_INVALID_INPUT", message="the engine refused the input: {message}")
        spec.exit_code(321, "ERROR_PERIODIC_CELL", message="the structure is periodic: {message}")
        spec.exit_code(322, "ERROR_ENGINE_FAILED", message="tblite failed: {message}")

    def prepare_for_submission(self, folder):
        settings = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        _write_structure(folder, self.inputs.structure)
        with folder.open(jobs.SETTINGS_FILE, "w", encoding="utf8") as handle:
            json.dump(settings, handle, indent=2)
        arguments = ["engine", self._engine_command, jobs.STRUCTURE_FILE, "--settings", jobs.SETTINGS_FILE,
                     "--output", self._engine_output, "--summary", jobs.SUMMARY_FILE]
        arguments += self._extra_arguments(folder)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = arguments
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.stderr_name = "aiida.err"

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [self._engine_output, jobs.SUMMARY_FILE, codeinfo.stdout_name, "aiida.err"]
        return calcinfo

    def _extra_arguments(self, folder):
        """Command-line arguments beyond the common ones (files written into ``folder``)."""
        return []


class TbliteBornChargesCalculation(TbliteCalculation):
    """Born effective charges of a molecule or cluster from the tblite dipole (``aiida-irspec engine born-charges``).

    Output ``born_charges``: BornChargesData (N, 3, 3) in |e|, no dielectric tensor (a molecule has none).
    """

    _engine_command = "born-charges"
    _engine_output = jobs.BORN_CHARGES_FILE
    _engine_defaults = jobs.BORN_CHARGES_SETTINGS

    @classmethod
    def define(cls, spec):
        super().define(spec)
        from aiida_irspec.data.born_charges import BornChargesData

        spec.inputs["metadata"]["options"]["parser_name"].default = "irspec.tblite.born_charges"
        spec.output("born_charges", valid_type=BornChargesData,
                    help="Born effective charges Z[i, a, b] = dP_a / dx_{i,b} in |e|.")


class TbliteMdCalculation(TbliteCalculation):
    """Molecular dynamics with tblite through ASE (``aiida-irspec engine md``): Langevin NVT or NVE.

    Outputs: ``trajectory`` (TrajectoryData: unwrapped positions, cells, times in fs, velocities in
    Angstrom/fs; arrays potential_energy, kinetic_energy (eV), temperature (K), dipoles (|e| Angstrom,
    when recorded); attribute ``units``), ``final_structure`` and ``final_velocities`` (ArrayData
    ``velocities`` (N, 3) Angstrom/fs) of the last frame, so that an NVE run can start from an NVT one.
    """

    _engine_command = "md"
    _engine_output = jobs.TRAJECTORY_FILE
    _engine_defaults = jobs.MD_SETTINGS

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs["metadata"]["options"]["parser_name"].default = "irspec.tblite.md"
        spec.input("velocities", valid_type=orm.ArrayData, required=False,
                   help="Initial velocities: array 'velocities' (N, 3) in Angstrom/fs, site order.")
        spec.output("trajectory", valid_type=orm.TrajectoryData, help="The stored frames.")
        spec.output("final_structure", valid_type=orm.StructureData, help="The last frame.")
        spec.output("final_velocities", valid_type=orm.ArrayData,
                    help="Velocities of the last frame: array 'velocities' (N, 3) in Angstrom/fs.")
        spec.exit_code(323, "ERROR_ENERGY_DRIFT", message="{message}")
        spec.inputs.validator = _validate_velocities

    def _extra_arguments(self, folder):
        if "velocities" not in self.inputs:
            return []
        velocities = self.inputs.velocities.get_array("velocities")
        with folder.open(jobs.VELOCITIES_FILE, "wb") as handle:
            np.save(handle, np.asarray(velocities, dtype=float))
        return ["--velocities", jobs.VELOCITIES_FILE]
