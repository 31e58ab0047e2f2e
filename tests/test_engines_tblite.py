"""The embedded engine without AiiDA: tblite dipoles and Born charges, ASE MD, the file-based engine jobs."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ase")
pytest.importorskip("tblite")

import ase.build  # noqa: E402
import ase.io  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.collections import s22  # noqa: E402

from aiida_irspec import units  # noqa: E402
from aiida_irspec.engines import jobs, md, tblite  # noqa: E402
from aiida_irspec.exceptions import EngineError, InputError, PeriodicCellError  # noqa: E402


@pytest.fixture(scope="module")
def water():
    """ASE's water molecule: O at the origin, H in the yz plane, mirror images under y -> -y (C2v, axis z)."""
    return molecule("H2O")


@pytest.fixture(scope="module")
def water_charges(water):
    return tblite.born_charges(water)


@pytest.fixture(scope="module")
def dimer():
    return s22["Water_dimer"]


def rotation(seed):
    matrix, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return matrix * np.sign(np.linalg.det(matrix))


# ---- dipole and Born charges -------------------------------------------------------------------------

def test_water_dipole_along_the_c2_axis_and_translation_invariant(water):
    moment = tblite.dipole(water)
    assert abs(moment[0]) < 1e-8 and abs(moment[1]) < 1e-8
    assert 0.3 < abs(moment[2]) < 0.6  # GFN2-xTB water: 0.476 |e| A = 2.29 D
    shifted = water.copy()
    shifted.translate([1.3, -0.7, 2.1])
    np.testing.assert_allclose(tblite.dipole(shifted), moment, atol=1e-7)


def test_water_born_charges_sum_rule_and_c2v_symmetry(water_charges):
    charges = water_charges
    assert charges.shape == (3, 3, 3)
    assert np.abs(charges.sum(axis=0)).max() < 1e-3  # acoustic sum rule of a neutral molecule
    mirror_xz = np.diag([1.0, -1.0, 1.0])  # maps H1 <-> H2
    mirror_yz = np.diag([-1.0, 1.0, 1.0])  # the molecular plane: maps every atom to itself
    np.testing.assert_allclose(charges[2], mirror_xz @ charges[1] @ mirror_xz, atol=1e-3)
    for z in charges:
        np.testing.assert_allclose(z, mirror_yz @ z @ mirror_yz, atol=1e-3)
    oxygen = charges[0]
    np.testing.assert_allclose(oxygen, np.diag(np.diag(oxygen)), atol=1e-3)  # O sits on both mirror planes
    assert np.all(np.diag(oxygen) < -0.3) and np.all(np.diag(charges[1]) > 0.1)


def test_born_charges_rotate_with_the_molecule(water, water_charges):
    matrix = rotation(3)
    turned = water.copy()
    turned.positions = water.positions @ matrix.T
    expected = np.einsum("ab,ibc,dc->iad", matrix, water_charges, matrix)
    np.testing.assert_allclose(tblite.born_charges(turned), expected, atol=2e-3)


def test_central_differences_converged(dimer):
    fine = tblite.born_charges(dimer, displacement=1e-3)
    coarse = tblite.born_charges(dimer, displacement=2e-3)
    assert np.abs(fine - coarse).max() < 1e-3
    assert np.abs(fine.sum(axis=0)).max() < 1e-3


def test_finite_field_route_agrees_with_displacements(dimer):
    displaced = tblite.born_charges(dimer, route="displacement")
    field = tblite.born_charges(dimer, route="field", field=1e-3)
    assert np.abs(field.sum(axis=0)).max() < 1e-9  # exact on this route
    # measured: 2.3e-3 |e| for the water dimer (GFN2's dipole and its field coupling differ slightly)
    assert np.abs(field - displaced).max() < 5e-3


def test_charged_molecule_sum_rule_is_the_charge():
    hydroxide = molecule("OH")
    charges = tblite.born_charges(hydroxide, charge=-1, multiplicity=1)
    np.testing.assert_allclose(charges.sum(axis=0), -np.eye(3), atol=1e-3)


def test_periodic_cell_refused(water):
    crystal = water.copy()
    crystal.cell = [8.0, 8.0, 8.0]
    crystal.pbc = True
    for function in (tblite.dipole, tblite.born_charges):
        with pytest.raises(PeriodicCellError, match="periodic"):
            function(crystal)
    with pytest.raises(PeriodicCellError):
        md.run_md(crystal, tblite.make_calculator(), ensemble="nve", temperature=10, steps=1, timestep=0.5,
                  record_dipoles=True)


def test_bad_settings_and_engine_failures(water):
    with pytest.raises(InputError, match="method"):
        tblite.make_calculator(method="GFN3")
    with pytest.raises(InputError, match="route"):
        tblite.born_charges(water, route="sideways")
    with pytest.raises(InputError, match="positive"):
        tblite.born_charges(water, displacement=0.0)
    collapsed = water.copy()
    collapsed.positions[1] = collapsed.positions[0]
    with pytest.raises(EngineError, match="tblite"):
        tblite.dipole(collapsed)


# ---- molecular dynamics ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def equilibrated(dimer):
    """1 ps of Langevin NVT of the water dimer at 300 K (0.5 fs, friction 10/ps), with dipoles."""
    return md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=2000, timestep=0.5,
                     stride=10, seed=7, record_dipoles=True)


def test_md_result_shapes_units_and_reproducibility(dimer, equilibrated, tmp_path):
    result = equilibrated
    assert result.positions.shape == (201, 6, 3) and result.velocities.shape == (201, 6, 3)
    assert result.dipoles.shape == (201, 3) and result.cells.shape == (201, 3, 3)
    np.testing.assert_allclose(result.times, np.arange(201) * 5.0)
    kinetic = 0.5 * np.einsum("i,fij->f", result.masses, result.velocities**2) * units.AMU_A2_PER_FS2_IN_EV
    np.testing.assert_allclose(kinetic, result.kinetic_energy, rtol=1e-10)
    np.testing.assert_allclose(result.temperature,
                               2 * result.kinetic_energy / (15 * units.BOLTZMANN_EV), rtol=1e-12)
    # the velocities are the time derivative of the positions (central difference over a short run)
    fine = md.run_md(dimer, tblite.make_calculator(), ensemble="nve", temperature=300.0, steps=20, timestep=0.1,
                     seed=1)
    derivative = (fine.positions[2:] - fine.positions[:-2]) / 0.2
    np.testing.assert_allclose(derivative, fine.velocities[1:-1], atol=2e-4)
    # the recorded dipole is the tblite dipole of the frame (from an SCF restarted at the previous step)
    frame = dimer.copy()
    frame.positions = result.positions[50]
    np.testing.assert_allclose(result.dipoles[50], tblite.dipole(frame), atol=1e-4)  # SCF tolerance
    again = md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=2000, timestep=0.5,
                      stride=10, seed=7, record_dipoles=True)
    assert np.array_equal(again.positions, result.positions) and np.array_equal(again.velocities, result.velocities)
    other = md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=20, timestep=0.5,
                      stride=10, seed=8)
    assert not np.array_equal(other.velocities[0], result.velocities[0])
    path = tmp_path / "run.npz"
    result.save_npz(path)
    loaded = md.MDResult.load_npz(path)
    for name in md.MDResult.ARRAYS + ("dipoles",):
        assert np.array_equal(getattr(loaded, name), getattr(result, name)), name
    assert loaded.info == result.info


def test_bit_reproducible_whatever_the_openmp_threads(dimer):
    """OpenMP set to two threads around the calls (what OMP_NUM_THREADS=2 does): two MD runs from one seed and
    two Born-charge calculations are still equal bit for bit, because the calculator pins one thread, and the
    caller's setting is back afterwards. Measured without the pin: two 100-step runs differ by 5e-14 A."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="openmp"):
        runs = [md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=100,
                          timestep=0.5, stride=10, seed=7) for _ in range(2)]
        charges = [tblite.born_charges(dimer) for _ in range(2)]
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"} <= {2}
    assert np.array_equal(runs[0].positions, runs[1].positions)
    assert np.array_equal(runs[0].velocities, runs[1].velocities)
    assert np.array_equal(charges[0], charges[1])


def test_nve_energy_conserved_from_an_nvt_snapshot(equilibrated):
    start = equilibrated.final_atoms()
    run = md.run_md(start, tblite.make_calculator(), ensemble="nve", temperature=300.0, steps=2000, timestep=0.5,
                    stride=5, initial_velocities=equilibrated.velocities[-1])
    np.testing.assert_allclose(run.velocities[0], equilibrated.velocities[-1] -
                               np.average(equilibrated.velocities[-1], axis=0, weights=equilibrated.masses),
                               atol=1e-12)
    info = run.info
    # measured: relative drift 0.002-0.006 <K>/ps and scatter 0.002-0.006 <K> at 0.5 fs
    assert not info["drift_too_large"]
    assert info["relative_energy_drift_per_ps"] < 0.02 and info["relative_energy_scatter"] < 0.01
    assert abs(run.total_energy[-1] - run.total_energy[0]) < 0.01 * run.kinetic_energy.mean()


def test_nve_time_step_too_large_is_flagged(equilibrated):
    start = equilibrated.final_atoms()
    run = md.run_md(start, tblite.make_calculator(), ensemble="nve", temperature=300.0, steps=250, timestep=2.0,
                    initial_velocities=equilibrated.velocities[-1])
    assert run.info["drift_too_large"]
    assert run.info["relative_energy_scatter"] > 0.03


def test_md_that_blows_up_raises_engine_error(equilibrated):
    with pytest.raises(EngineError, match="MD step"):
        md.run_md(equilibrated.final_atoms(), tblite.make_calculator(max_iterations=30), ensemble="nve",
                  temperature=300.0, steps=50, timestep=5.0, initial_velocities=equilibrated.velocities[-1])


def test_unwrapped_positions_in_a_periodic_cell():
    from ase.calculators.lj import LennardJones

    argon = ase.build.bulk("Ar", "sc", a=3.8).repeat(2)
    run = md.run_md(argon, LennardJones(sigma=3.4, epsilon=0.0104, rc=6.0), ensemble="nvt", temperature=3000.0,
                    steps=400, timestep=5.0, stride=4, seed=0, friction=1.0)
    fractional = run.positions @ np.linalg.inv(run.cells[0])
    assert fractional.min() < 0 or fractional.max() >= 1  # atoms left the cell and were not wrapped back
    steps = np.linalg.norm(np.diff(run.positions, axis=0), axis=-1)
    assert steps.max() < 1.5  # no jumps by a lattice vector


def test_md_bad_settings(dimer):
    calculator = tblite.make_calculator()
    for settings, message in [({"ensemble": "npt"}, "ensemble"), ({"stride": 3}, "stride"),
                              ({"timestep": -1.0}, "time step"), ({"friction": 0.0}, "friction"),
                              ({"initial_velocities": np.zeros((2, 3))}, "velocities")]:
        arguments = {"ensemble": "nvt", "temperature": 300.0, "steps": 10, "timestep": 0.5, **settings}
        with pytest.raises(InputError, match=message):
            md.run_md(dimer, calculator, **arguments)


@pytest.mark.slow
def test_nvt_mean_temperature_water_cluster():
    """8 water molecules (69 degrees of freedom), 10 ps of Langevin at 300 K (0.5 fs, friction 20/ps):
    mean temperature of the last 9 ps within 5% of the target."""
    cluster = _water_cluster(8)
    run = md.run_md(cluster, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=20000,
                    timestep=0.5, stride=10, seed=3, friction=20.0)
    production = run.temperature[200:]
    assert abs(production.mean() - 300.0) < 0.05 * 300.0


@pytest.mark.slow
def test_nvt_mean_temperature_water_dimer():
    """Water dimer (15 degrees of freedom), 10 ps of Langevin at 300 K (0.5 fs, friction 50/ps): within 5%.

    Measured: 300.9 K (20000 steps); 5 ps runs scatter by 1-5% between seeds, hence 10 ps.
    """
    run = md.run_md(s22["Water_dimer"], tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=20000,
                    timestep=0.5, stride=10, seed=1, friction=50.0)
    production = run.temperature[200:]
    assert abs(production.mean() - 300.0) < 0.05 * 300.0


def _water_cluster(count, spacing=3.0):
    """``count`` water molecules on a cubic grid of ``spacing`` Angstrom, randomly oriented (seeded)."""
    rng = np.random.default_rng(11)
    side = int(np.ceil(count ** (1 / 3)))
    cluster = ase.Atoms()
    for k in range(count):
        single = molecule("H2O")
        single.positions = single.positions @ rotation(int(rng.integers(1 << 30))).T
        single.translate(spacing * np.array([k % side, (k // side) % side, k // side**2]))
        cluster += single
    return cluster


# ---- the file-based jobs and the command -------------------------------------------------------------

def engine(*arguments, cwd):
    """Run ``aiida-irspec engine ...`` (the console script of this environment) in ``cwd``."""
    executable = pathlib.Path(sys.executable).parent / "aiida-irspec"
    return subprocess.run([str(executable), "engine", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_engine_command_born_charges_and_exit_codes(tmp_path, dimer):
    ase.io.write(tmp_path / "structure.extxyz", dimer, format="extxyz")
    done = engine("born-charges", "structure.extxyz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["sum_rule_max"] < 1e-3
    with np.load(tmp_path / "born_charges.npz") as data:
        np.testing.assert_allclose(data["born_charges"], tblite.born_charges(dimer), atol=1e-10)

    crystal = dimer.copy()
    crystal.cell, crystal.pbc = [10.0] * 3, True
    ase.io.write(tmp_path / "crystal.extxyz", crystal, format="extxyz")
    refused = engine("born-charges", "crystal.extxyz", cwd=tmp_path)
    assert refused.returncode == jobs.EXIT_CODES["periodic"] == 11 and "periodic" in refused.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["error"] == "periodic"

    (tmp_path / "settings.json").write_text('{"displacement": "big"}')
    bad = engine("born-charges", "structure.extxyz", "-s", "settings.json", cwd=tmp_path)
    assert bad.returncode == 2 and "displacement" in bad.stderr
    (tmp_path / "broken.extxyz").write_text("3\nnot a comment line\nO 0 0\n")
    assert engine("born-charges", "broken.extxyz", cwd=tmp_path).returncode == 2


def test_engine_jobs_md_and_drift_exit(tmp_path, dimer, equilibrated):
    ase.io.write(tmp_path / "structure.extxyz", equilibrated.final_atoms(), format="extxyz")
    np.save(tmp_path / "velocities.npy", equilibrated.velocities[-1])
    (tmp_path / "settings.json").write_text(json.dumps({"ensemble": "nve", "steps": 200, "timestep": 0.5,
                                                        "stride": 10}))
    error = jobs.run_md_job(tmp_path / "structure.extxyz", tmp_path / "settings.json", tmp_path / "velocities.npy",
                            output=tmp_path / "trajectory.npz", summary=tmp_path / "summary.json")
    assert error == "ok"
    result = md.MDResult.load_npz(tmp_path / "trajectory.npz")
    assert result.positions.shape == (21, 6, 3)
    np.testing.assert_allclose(result.positions[0], equilibrated.positions[-1], atol=1e-6)  # extxyz precision

    (tmp_path / "settings.json").write_text(json.dumps({"ensemble": "nve", "steps": 100, "timestep": 2.0}))
    drift = engine("md", "structure.extxyz", "-s", "settings.json", "-v", "velocities.npy", cwd=tmp_path)
    assert drift.returncode == jobs.EXIT_CODES["drift"] == 13, drift.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["error"] == "drift" and summary["drift_too_large"]
    assert md.MDResult.load_npz(tmp_path / "trajectory.npz").positions.shape == (101, 6, 3)  # still written
