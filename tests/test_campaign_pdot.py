"""Reading trajectories for ``aiida-irspec pdot``: npz from the MD engine, ASE formats, unwrapping."""

import numpy as np
import pytest

from aiida_irspec.campaign.pdot import (NpzTrajectory, choose_route, open_trajectory, predict_along, read_trajectory,
                                        trajectory_atoms, unwrap)
from aiida_irspec.exceptions import InputError, MalformedFileError
from campaign_helpers import water_dimer_md
from model_structures import fluorite


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


def wrapped_periodic_trajectory(tmp_path, n_frames=23, velocities=True):
    """An npz of a 12-atom fluorite cell drifting across its skewed cell, positions folded back into the cell
    (so the reader must unwrap), 0.5 fs apart; returns (path, continuous positions, cell)."""
    atoms = fluorite(1)
    cell = atoms.cell.array
    drift = np.random.default_rng(2).normal(scale=0.4, size=(n_frames, len(atoms), 3)).cumsum(axis=0)
    true = atoms.positions + drift
    wrapped = (np.linalg.solve(cell.T, true.reshape(-1, 3).T).T % 1.0 @ cell).reshape(true.shape)
    arrays = {"times": 0.5 * np.arange(n_frames), "positions": wrapped, "cells": np.repeat(cell[None], n_frames, 0),
              "numbers": atoms.numbers, "pbc": np.ones(3, dtype=bool)}
    if velocities:
        arrays["velocities"] = np.gradient(true, 0.5, axis=0)
    np.savez_compressed(tmp_path / "wrapped.npz", **arrays)
    return tmp_path / "wrapped.npz", true, cell


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_streamed_npz_equals_the_whole_file(tmp_path, size):
    """Chunks of any size, unwrapped across chunk boundaries, put together give the whole trajectory."""
    path, true, _ = wrapped_periodic_trajectory(tmp_path)
    whole = read_trajectory(path)
    assert np.allclose(whole["positions"] - whole["positions"][0], true - true[0], atol=1e-10)
    with NpzTrajectory(path) as trajectory:
        chunks = list(trajectory.chunks(size))
        assert trajectory.pbc.all() and trajectory.has_velocities and len(trajectory.times) == len(true)
    assert max(len(chunk["positions"]) for chunk in chunks) == min(size, len(true))
    for name in ("positions", "cells", "velocities"):
        assert np.array_equal(np.concatenate([chunk[name] for chunk in chunks]), whole[name])


def random_periodic_model():
    """A fitted-looking dipole model of Zr/O with random weights (formal baseline), small descriptor."""
    from aiida_irspec.model import DescriptorSettings, PolarizationModel
    from aiida_irspec.model.kinds import ModelSpace

    settings = DescriptorSettings(cutoff=3.6, n_radial=2, l_max=2, gaussian_width=0.4)
    model = PolarizationModel(settings, baseline={40: 4.0, 8: -2.0})
    model._space = ModelSpace("dipole", settings, [8, 40])
    model.charges = {40: 4.0, 8: -2.0}
    model.weights = np.random.default_rng(0).normal(scale=0.1, size=model._space.n_columns)
    model.posterior_factor = np.zeros((model._space.n_columns, 1))
    return model


def test_prediction_streams_chunks_and_records_its_route(tmp_path):
    """predict_along in chunks of 4 frames and batches of 3 equals the model on all frames at once; "auto" takes
    the polarization route for frames 0.5 fs apart and says so; the velocity route is dP/dt; the mean volume."""
    path, true, cell = wrapped_periodic_trajectory(tmp_path)
    model = random_periodic_model()
    frames = trajectory_atoms(read_trajectory(path))
    with open_trajectory(path) as trajectory:
        arrays = predict_along(model, trajectory, batch_size=3, chunk_frames=4)
    assert str(arrays["route"]) == "polarization" and "pdot" not in arrays
    np.testing.assert_allclose(arrays["polarization"], model.predict_polarization(frames), rtol=0, atol=1e-12)
    assert arrays["volume"] == pytest.approx(abs(np.linalg.det(cell))) and np.array_equal(arrays["numbers"],
                                                                                          frames[0].numbers)
    with open_trajectory(path) as trajectory:
        velocity = predict_along(model, trajectory, route="velocity", batch_size=3, chunk_frames=4)
    assert str(velocity["route"]) == "velocity"
    expected = model.predict_pdot(frames, read_trajectory(path)["velocities"])
    np.testing.assert_allclose(velocity["pdot"], expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_choose_route():
    fine, sparse = 0.5 * np.arange(10), 5.0 * np.arange(10)
    assert choose_route(fine, True) == "polarization"
    assert choose_route(sparse, True) == "velocity"
    assert choose_route(sparse, False) == "polarization"  # no velocities: P is all there is
    assert choose_route(np.arange(10.0), True) == "polarization"  # 1 fs is still resolved
    assert choose_route(sparse, True, "polarization") == "polarization"
    with pytest.raises(InputError, match="no velocities"):
        choose_route(fine, False, "velocity")
    with pytest.raises(InputError, match="unknown route"):
        choose_route(fine, True, "fast")


def test_damaged_chunks_are_clean_errors(tmp_path):
    """A NaN late in the file, or positions cut short, are found when their chunk is read: MalformedFileError."""
    path, true, _ = wrapped_periodic_trajectory(tmp_path, velocities=False)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["positions"][-1, 3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with NpzTrajectory(tmp_path / "nan.npz") as trajectory, pytest.raises(MalformedFileError, match="finite"):
        list(trajectory.chunks(5))
    arrays["positions"] = arrays["positions"][:-1]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(MalformedFileError, match="'positions' of shape"):
        NpzTrajectory(tmp_path / "short.npz")
