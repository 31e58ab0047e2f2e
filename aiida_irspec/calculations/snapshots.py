"""calcfunctions that cut a trajectory into what the spectrum runs need: start snapshots, dipole series."""

from aiida import orm

from aiida_irspec.calculations.versioned import versioned_calcfunction


@versioned_calcfunction
def extract_snapshots(trajectory: orm.TrajectoryData, frames: orm.List) -> dict:
    """Start points of independent runs: for each frame index k of ``frames``, ``structure_<k>``
    (StructureData, periodic as the frame) and ``velocities_<k>`` (ArrayData ``velocities`` (N, 3) A/fs)."""
    from aiida_irspec.data.frames import frame_structure

    velocities = trajectory.get_array("velocities")
    outputs = {}
    for k in frames.get_list():
        outputs[f"structure_{k}"] = frame_structure(trajectory, k)
        node = orm.ArrayData()
        node.set_array("velocities", velocities[k])
        node.base.attributes.set("units", "Angstrom/fs")
        outputs[f"velocities_{k}"] = node
    return outputs


@versioned_calcfunction
def trajectory_polarization(trajectory: orm.TrajectoryData) -> orm.ArrayData:
    """The engine's own dipole along a trajectory (array ``dipoles``, |e| A) as ``times`` (fs) and
    ``polarization`` (F, 3), the input :func:`aiida_irspec.calculations.aggregate.aggregate_spectra` takes."""
    node = orm.ArrayData()
    node.set_array("times", trajectory.get_times())
    node.set_array("polarization", trajectory.get_array("dipoles"))
    node.base.attributes.set("units", {"times": "fs", "polarization": "|e| Angstrom"})
    return node
