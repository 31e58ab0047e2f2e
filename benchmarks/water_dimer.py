"""The paper's headline on a water dimer with GFN2-xTB (tblite) reference data: a model trained on Born
charges only predicts the dipole of unseen structures.

Protocol (Schmiedmayer & Kresse 2024, water dimer): Langevin MD heating from 10 to 320 K (friction
10 / ps, one O atom fixed), 1000 structures with P and 150 with Z; the P set split alternately into
halves (the odd half is the test set); the 150 Z structures come from the other half, 100 for training
and 50 for validation. Error metric: relative RMSE = RMSE / standard deviation of the test set.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/water_dimer.py [--cache /tmp/...npz]

The reference data are generated on the first run and cached (not committed).
"""

import argparse
import pathlib
import time

import numpy as np
from ase import Atoms
from ase.collections import s22

from aiida_irspec.model import PolarizationModel

CACHE = pathlib.Path("/tmp/aiida-irspec-benchmarks/water_dimer.npz")


def generate(path, n_structures=1000, n_born=150, stride=20, timestep=0.5, seed=1):
    """Heating MD (10 -> 320 K) with tblite; dipoles of every stored frame, Born charges of n_born of the even ones."""
    from ase.constraints import FixAtoms
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from aiida_irspec import units
    from aiida_irspec.engines import tblite

    atoms = s22["Water_dimer"].copy()
    atoms.calc = tblite.make_calculator()
    atoms.set_constraint(FixAtoms(indices=[int(np.nonzero(atoms.numbers == 8)[0][0])]))
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=10.0, rng=rng)
    friction = 10.0 * 1e-3 * units.ASE_TIME_UNIT_FS
    dynamics = Langevin(atoms, timestep / units.ASE_TIME_UNIT_FS, temperature_K=10.0, friction=friction, fixcm=False,
                         rng=rng)
    positions, dipoles = [], []
    started = time.perf_counter()
    for k in range(n_structures):
        dynamics.set_temperature(temperature_K=10.0 + 310.0 * k / (n_structures - 1))
        dynamics.run(stride)
        positions.append(atoms.get_positions())
        dipoles.append(tblite.dipole(Atoms(atoms.numbers, positions=positions[-1])))
    md_seconds = time.perf_counter() - started
    even = np.arange(0, n_structures, 2)
    born_index = even[np.round(np.linspace(0, len(even) - 1, n_born)).astype(int)]
    started = time.perf_counter()
    born = np.array([tblite.born_charges(Atoms(atoms.numbers, positions=positions[k])) for k in born_index])
    born_seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, numbers=atoms.numbers, positions=np.array(positions), dipoles=np.array(dipoles),
             born_index=born_index, born_charges=born)
    print(f"generated {n_structures} structures ({md_seconds:.0f} s MD + dipoles) and {n_born} Born-charge sets "
          f"({born_seconds:.0f} s) -> {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=CACHE)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100])
    arguments = parser.parse_args()
    if not arguments.cache.exists():
        generate(arguments.cache)
    data = np.load(arguments.cache)
    numbers = data["numbers"]
    frames = [Atoms(numbers, positions=p) for p in data["positions"]]
    dipoles, born_index, born = data["dipoles"], data["born_index"], data["born_charges"]
    test = np.arange(1, len(frames), 2)
    test_p = dipoles[test]
    p_std = np.sqrt(np.mean((test_p - test_p.mean(0)) ** 2))
    validation = np.arange(len(born_index)) % 3 == 2  # 50 of 150
    train = np.nonzero(~validation)[0]
    z_val = born[validation]
    z_std = np.sqrt(np.mean((z_val - z_val.mean(0)) ** 2))
    print(f"test set: {len(test)} dipoles (std {p_std:.4f} |e| A); "
          f"{validation.sum()} validation Z (std {z_std:.4f} |e|)")
    print("trained on Z only; relative RMSE = RMSE / std of the test set")
    print(" n_train  baseline  RMSE_P (|e| A)  rel. P   RMSE_Z (|e|)  rel. Z   fit (s)")
    for n in arguments.sizes:
        chosen = train[np.round(np.linspace(0, len(train) - 1, n)).astype(int)]
        started = time.perf_counter()
        model = PolarizationModel().fit([frames[born_index[k]] for k in chosen], [born[k] for k in chosen])
        seconds = time.perf_counter() - started
        p = model.predict_polarization([frames[k] for k in test])
        z = model.predict_born_charges([frames[born_index[k]] for k in np.nonzero(validation)[0]])
        rmse_p = np.sqrt(np.mean((p - test_p) ** 2))
        rmse_z = np.sqrt(np.mean((z - z_val) ** 2))
        print(f" {n:7d}  {model.metrics['baseline']:>8s}  {rmse_p:14.5f}  {100 * rmse_p / p_std:5.2f}%  "
              f"{rmse_z:12.5f}  {100 * rmse_z / z_std:5.2f}%  {seconds:7.1f}")


if __name__ == "__main__":
    main()
