"""aiida-vasp's VASP CalcJob with what machine-learned force-field MD needs on top.

:class:`VaspMdCalculation` is aiida-vasp's ``vasp.vasp`` CalcJob (same inputs, outputs, exit codes,
parser) plus three optional inputs:

- ``velocities``: ArrayData with array ``velocities`` (N, 3), Cartesian Angstrom/fs, atoms in the
  order of the structure's sites. aiida-vasp's POSCAR writer knows no velocities, so the POSCAR is
  written by aiida-vasp and the velocity block is appended: a line ``Cartesian`` and N lines of
  Angstrom/fs (VASP's POSCAR format for initial MD velocities).
- ``ml_ff``: the force field for ``ML_MODE = run``, staged as ``ML_FF``: a SinglefileData (copied from
  the AiiDA repository) or a RemoteData whose remote path is the file itself (copied on the remote
  computer, e.g. ``<training run>/ML_FFN``).
- ``ml_ab``: an ``ML_AB`` training set (SinglefileData) to continue on-the-fly training from.
"""

from aiida import orm

from aiida_vasp.calcs.vasp import VaspCalculation


class VaspMdCalculation(VaspCalculation):
    """aiida-vasp's VASP calculation with initial velocities in POSCAR and ML_FF / ML_AB staging."""

    CACHE_VERSION = 1  # bumped when the files this class writes or stages change (VASP makes the results)
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("velocities", valid_type=orm.ArrayData, required=False,
                   help="Initial velocities: array 'velocities' (N, 3), Cartesian Angstrom/fs, site order.")
        spec.input("ml_ff", valid_type=(orm.SinglefileData, orm.RemoteData), required=False,
                   help="Machine-learned force field for ML_MODE = run, staged as ML_FF (a file, or a "
                        "RemoteData whose path is the file).")
        spec.input("ml_ab", valid_type=orm.SinglefileData, required=False,
                   help="ML_AB training data to continue on-the-fly training from.")

    def verify_inputs(self):
        super().verify_inputs()
        if "velocities" in self.inputs:
            velocities = self.inputs.velocities.get_array("velocities")
            n_sites = len(self._structure().sites)
            if velocities.shape != (n_sites, 3):
                raise ValueError(f"velocities must have shape ({n_sites}, 3), got {velocities.shape}")
        ml_ff = self.inputs.get("ml_ff")
        if isinstance(ml_ff, orm.RemoteData) and ml_ff.computer.pk != self.node.computer.pk:
            raise ValueError("ml_ff RemoteData must live on the computer of the calculation")

    def write_poscar(self, dst):
        """aiida-vasp's POSCAR, then the velocity block when ``velocities`` is given."""
        super().write_poscar(dst)
        if "velocities" not in self.inputs:
            return
        velocities = self.inputs.velocities.get_array("velocities")
        with open(dst, "a", encoding="utf8") as handle:
            handle.write("Cartesian\n")
            for vx, vy, vz in velocities:
                handle.write(f"{vx:20.12e} {vy:20.12e} {vz:20.12e}\n")

    def write_additional(self, folder, calcinfo):
        """Stage ML_FF and ML_AB next to aiida-vasp's CHGCAR / WAVECAR / vdW kernel handling."""
        super().write_additional(folder, calcinfo)
        ml_ff = self.inputs.get("ml_ff")
        if isinstance(ml_ff, orm.SinglefileData):
            calcinfo.local_copy_list.append((ml_ff.uuid, ml_ff.filename, "ML_FF"))
        elif isinstance(ml_ff, orm.RemoteData):
            calcinfo.remote_copy_list.append((ml_ff.computer.uuid, ml_ff.get_remote_path(), "ML_FF"))
        if "ml_ab" in self.inputs:
            ml_ab = self.inputs.ml_ab
            calcinfo.local_copy_list.append((ml_ab.uuid, ml_ab.filename, "ML_AB"))
