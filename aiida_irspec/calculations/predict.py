"""CalcJob ``irspec.predict_pdot``: dP/dt (or P) of a polarization model along a trajectory, where it is stored.

It runs ``aiida-irspec pdot`` (:mod:`aiida_irspec.cli.trajectory`) through a Code that points at the
``aiida-irspec`` executable on the computer of the job. The trajectory is either a TrajectoryData (written
into the job folder as ``trajectory.npz``) or a RemoteData folder on the same computer, e.g. the remote
folder of an MD job: its file is symlinked into the job folder, so a long remote trajectory is never
copied back. Only the small dP/dt series is retrieved.

Exit codes: 300 ERROR_MISSING_OUTPUT (no pdot.npz: see the retrieved aiida.err), 301 ERROR_CORRUPT_OUTPUT;
a scheduler exit code (e.g. 120, out of wall time) set before parsing is kept.
"""

import io

import numpy as np
from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

from aiida_irspec import NUMERICS_VERSION
from aiida_irspec.data.polarization_model import PolarizationModelData
from aiida_irspec.settings import unknown_settings

TRAJECTORY_FILE = "trajectory.npz"
OUTPUT_FILE = "pdot.npz"
SETTINGS = {"route": ("auto", "velocity", "polarization"), "timestep": float, "batch_size": int}


def _validate(inputs, _):
    """Exactly one trajectory source; settings with known keys and values; a remote file name for RemoteData."""
    given = [key for key in ("trajectory", "remote_trajectory") if key in inputs]
    if len(given) != 1:
        return "give exactly one of trajectory (TrajectoryData) and remote_trajectory (RemoteData)"
    if "remote_trajectory" in inputs and "trajectory_filename" not in inputs:
        return "remote_trajectory needs trajectory_filename (the file inside the remote folder)"
    if "trajectory" in inputs and "velocities" not in inputs["trajectory"].get_arraynames():
        route = inputs["settings"].get_dict().get("route", "auto") if "settings" in inputs else "auto"
        if route == "velocity":
            return "the trajectory has no 'velocities' array: use settings {'route': 'polarization'}"
    if "settings" in inputs:
        settings = inputs["settings"].get_dict()
        message = unknown_settings(settings, SETTINGS)
        if message:
            return message
        if settings.get("route", "auto") not in SETTINGS["route"]:
            return f"settings route {settings['route']!r}: use one of {', '.join(SETTINGS['route'])}"
    return None


def trajectory_npz(trajectory):
    """The bytes of the npz that ``aiida-irspec pdot`` reads, from a TrajectoryData (times in fs)."""
    from ase.data import atomic_numbers

    from aiida_irspec.data.frames import frame_pbc

    cells = trajectory.get_cells()
    positions = trajectory.get_positions()
    cells = np.zeros((len(positions), 3, 3)) if cells is None else cells
    times = trajectory.get_times()
    if times is None:
        raise ValueError("the trajectory has no times (fs)")
    arrays = {"times": times, "positions": positions, "cells": cells,
              "numbers": np.array([atomic_numbers[s] for s in trajectory.symbols]),
              "pbc": frame_pbc(trajectory, cells[0])}
    if "velocities" in trajectory.get_arraynames():
        arrays["velocities"] = trajectory.get_array("velocities")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


class PredictPdotCalculation(CalcJob):
    """dP/dt (or P) of a PolarizationModelData along a trajectory, computed on the trajectory's computer.

    Output ``pdot``: ArrayData with ``times`` (F,) fs and ``pdot`` (F, 3) |e| Angstrom/fs (route
    "velocity") or ``polarization`` (F, 3) |e| Angstrom (route "polarization"); attributes ``units`` and
    ``route`` (the route taken: with settings route "auto", the default, the polarization route when the frames
    are at most 1 fs apart or carry no velocities, else the velocity route;
    :func:`aiida_irspec.campaign.pdot.choose_route`).
    """

    CACHE_VERSION = NUMERICS_VERSION  # the job runs the package's model: its results change with the numerics

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("model", valid_type=PolarizationModelData, help="The fitted polarization model.")
        spec.input("trajectory", valid_type=orm.TrajectoryData, required=False,
                   help="Trajectory stored in AiiDA (times in fs, positions unwrapped, array velocities in A/fs).")
        spec.input("remote_trajectory", valid_type=orm.RemoteData, required=False,
                   help="Remote folder holding the trajectory file (on the computer of this job).")
        spec.input("trajectory_filename", valid_type=orm.Str, required=False,
                   help="File in remote_trajectory: npz of `engine md`, or vasprun.xml, XDATCAR, ... (then "
                        "settings timestep is needed).")
        spec.input("settings", valid_type=orm.Dict, required=False,
                   help="route ('auto', the default: P when frames are at most 1 fs apart, else dP/dt; "
                        "'velocity' or 'polarization'), timestep (fs between frames, non-npz files), batch_size.")
        spec.inputs.validator = _validate
        spec.inputs["metadata"]["options"]["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        spec.inputs["metadata"]["options"]["parser_name"].default = "irspec.predict_pdot"
        spec.output("pdot", valid_type=orm.ArrayData, help="times (fs) and pdot (|e| A/fs) or polarization (|e| A).")
        # a crash or a damaged file is no result: never a cache source (a rerun computes again)
        spec.exit_code(300, "ERROR_MISSING_OUTPUT", message="pdot.npz was not retrieved: the command failed "
                                                            "(see the retrieved aiida.err).", invalidates_cache=True)
        spec.exit_code(301, "ERROR_CORRUPT_OUTPUT", message="pdot.npz cannot be read: {error}",
                       invalidates_cache=True)

    def prepare_for_submission(self, folder):
        settings = self.inputs.settings.get_dict() if "settings" in self.inputs else {}
        model = self.inputs.model
        calcinfo = CalcInfo()
        calcinfo.local_copy_list = [(model.uuid, model.filename, model.filename)]
        calcinfo.remote_symlink_list = []
        if "trajectory" in self.inputs:
            filename = TRAJECTORY_FILE
            with folder.open(filename, "wb") as handle:
                handle.write(trajectory_npz(self.inputs.trajectory))
        else:
            remote = self.inputs.remote_trajectory
            if remote.computer.uuid != self.node.computer.uuid:
                raise ValueError("remote_trajectory lives on another computer than this job")
            filename = self.inputs.trajectory_filename.value
            calcinfo.remote_symlink_list.append(
                (remote.computer.uuid, f"{remote.get_remote_path()}/{filename}", filename))
        arguments = ["pdot", model.filename, filename, "--output", OUTPUT_FILE,
                     "--route", settings.get("route", "auto")]
        for key in ("timestep", "batch_size"):
            if key in settings:
                arguments += [f"--{key.replace('_', '-')}", str(settings[key])]

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = arguments
        codeinfo.stdout_name = "aiida.out"
        codeinfo.stderr_name = "aiida.err"
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [OUTPUT_FILE, "aiida.out", "aiida.err"]
        return calcinfo
