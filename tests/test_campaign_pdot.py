"""Reading trajectories for ``aiida-irspec pdot``: npz from the MD engine, ASE formats, unwrapping."""

import numpy as np
import pytest

from aiida_irspec.campaign.pdot import read_trajectory, trajectory_atoms, unwrap
from aiida_irspec.exceptions import InputError, MalformedFileError
from campaign_helpers import water_dimer_md


def test_unwrap_recovers_continuous_motion_across_a_skewed_cell():
    cell = np.array([[5.0, 0, 0], [1.0, 4.0, 0], [0.5, 0.3, 6.0]])
    steps = np.arange(40)[:, None, None] * np.array([[0.37, -0.21, 0.52], [-0.44, 0.18, 0.05]])
    true = np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 4.0]]) + steps
    fractional = np.linalg.solve(cell.T, true.reshape(-1, 3).T).T % 1.0
    wrapped = (fractional @ cell).reshape(true.shape)
    assert np.abs(wrapped - true).max() > 1  # the wrap did fold atoms back
    unwrapped = unwrap(wrapped, np.repeat(cell[None], len(true), axis=0))
    assert np.allclose(unwrapped - unwrapped[0], true - true[0], atol=1e-12)


def test_npz_of_the_md_engine(tmp_path):
    result = water_dimer_md()
    result.save_npz(tmp_path / "t.npz")
    trajectory = read_trajectory(tmp_path / "t.npz")
    assert np.array_equal(trajectory["velocities"], result.velocities)
    assert np.array_equal(trajectory["times"], result.times)
    frames = trajectory_atoms(trajectory)
    assert len(frames) == len(result.times) and not frames[0].pbc.any()
    assert np.array_equal(frames[-1].positions, result.positions[-1])


def test_ase_format_needs_a_timestep(tmp_path):
    import ase.io

    result = water_dimer_md()
    ase.io.write(tmp_path / "t.extxyz", trajectory_atoms(read_trajectory_from(result, tmp_path)))
    with pytest.raises(InputError, match="time between frames"):
        read_trajectory(tmp_path / "t.extxyz")
    trajectory = read_trajectory(tmp_path / "t.extxyz", timestep=5.0)
    assert np.allclose(trajectory["times"], result.times) and trajectory["velocities"] is None
    assert np.allclose(trajectory["positions"], result.positions)


def read_trajectory_from(result, folder):
    result.save_npz(folder / "m.npz")
    return read_trajectory(folder / "m.npz")


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_trajectory(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", times=np.arange(3))
    with pytest.raises(MalformedFileError, match="missing positions, cells, numbers"):
        read_trajectory(tmp_path / "bad.npz")
