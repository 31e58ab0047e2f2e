"""Figures of the tblite engine (issue 6): Born-charge time of a water dimer, 10k-step MD time, NVE drift,
NVT mean temperature.

Run from the repository root on one thread:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/engine_tblite_figures.py [--nvt-steps 20000]
"""

import argparse
import statistics
import time

import numpy as np
from ase.collections import s22

from aiida_irspec.engines import md, tblite


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the Born-charge timing")
    parser.add_argument("--md-steps", type=int, default=10000, help="steps of the timed MD run")
    parser.add_argument("--nvt-steps", type=int, default=20000,
                        help="steps (0.5 fs) of the NVT temperature runs (0 skips them)")
    arguments = parser.parse_args()
    dimer = s22["Water_dimer"]

    timings, cpu_times = [], []
    for _ in range(arguments.repeats):
        started, cpu = time.perf_counter(), time.process_time()
        charges = tblite.born_charges(dimer)
        timings.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
    print(f"Born charges, water dimer (displacement route, 72 SCF): median {statistics.median(timings):.3f} s wall "
          f"({statistics.median(cpu_times):.3f} s CPU), min {min(timings):.3f} s over {arguments.repeats}; "
          f"sum rule max {np.abs(charges.sum(0)).max():.1e} |e|")
    started = time.perf_counter()
    tblite.born_charges(dimer, route="field")
    print(f"Born charges, water dimer (field route, 6 SCF): {time.perf_counter() - started:.3f} s")

    started, cpu = time.perf_counter(), time.process_time()
    nvt = md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=arguments.md_steps,
                    timestep=0.5, stride=10, seed=1)
    print(f"MD, water dimer, {arguments.md_steps} NVT steps (0.5 fs, stride 10): "
          f"{time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")

    started, cpu = time.perf_counter(), time.process_time()
    nve = md.run_md(nvt.final_atoms(), tblite.make_calculator(), ensemble="nve", temperature=300.0,
                    steps=arguments.md_steps, timestep=0.5, stride=10, initial_velocities=nvt.velocities[-1])
    info = nve.info
    print(f"MD, water dimer, {arguments.md_steps} NVE steps: {time.perf_counter() - started:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU; "
          f"drift {info['energy_drift_per_ps']:.2e} eV/ps = {info['relative_energy_drift_per_ps']:.4f} <K>/ps, "
          f"scatter {info['energy_scatter']:.2e} eV = {info['relative_energy_scatter']:.4f} <K>, "
          f"flagged: {info['drift_too_large']}")

    for seed in (1, 2, 3) if arguments.nvt_steps else ():
        run = md.run_md(dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0,
                        steps=arguments.nvt_steps, timestep=0.5, stride=10, seed=seed, friction=50.0)
        production = run.temperature[len(run.temperature) // 10:]
        print(f"NVT water dimer, {arguments.nvt_steps} x 0.5 fs, friction 50/ps, seed {seed}: mean T "
              f"{production.mean():.1f} K (target 300 K, 15 degrees of freedom, first 10% discarded)")


if __name__ == "__main__":
    main()
