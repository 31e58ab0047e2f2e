"""Throughput of `aiida-irspec spectrum`: 20 runs of 100k steps (the paper's production size for water), from npz
files to CSV and PNG. Target: 10 s or less and under 2 GB of memory.

    python benchmarks/spectrum_throughput.py [--runs 20] [--steps 100000] [--threads 1] [--keep DIR]

The runs are synthetic water-like currents (damped oscillators at 3400, 1645, 690 and 200 cm^-1, 0.25 fs steps)
written as `pdot` arrays. Wall time, CPU time (user + system: what a busy machine does not inflate much) and the
peak resident memory of the child process are printed.
"""

import argparse
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.signal

BANDS_CM1 = {3400.0: (1.0, 250.0), 1645.0: (0.25, 80.0), 690.0: (0.6, 250.0), 200.0: (0.1, 150.0)}  # weight, FWHM


def water_like_pdot(rng, steps, dt_fs):
    """(steps, 3) sum of AR(2) resonances, one per band with <|Pdot|^2> share = weight; scale arbitrary, |e| A/fs."""
    c_cm_per_fs = 2.99792458e-5
    total = np.zeros((steps, 3))
    for nu, (weight, width) in BANDS_CM1.items():
        theta = 2 * np.pi * c_cm_per_fs * nu * dt_fs
        r = np.exp(-np.pi * c_cm_per_fs * width * dt_fs)
        noise = rng.normal(size=(steps, 3))
        band = scipy.signal.lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], noise, axis=0)
        total += np.sqrt(weight) * band / band.std()
    return 1e-3 * total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--dt", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1, help="OMP/OPENBLAS/MKL threads of the timed command")
    parser.add_argument("--keep", help="keep the files in this folder")
    args = parser.parse_args()

    folder = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="spectrum-throughput-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    runs = []
    for k in range(args.runs):
        path = folder / f"run{k:02d}.npz"
        np.savez(path, pdot=water_like_pdot(rng, args.steps, args.dt))
        runs.append(str(path))
    size = sum(os.path.getsize(p) for p in runs) / 1e6
    print(f"{args.runs} runs x {args.steps} steps written ({size:.0f} MB) to {folder}")

    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    command = [shutil.which("aiida-irspec") or "aiida-irspec", "spectrum", *runs, "--dt", str(args.dt),
               "--temperature", "300", "--volume", "1000", "--window", "gaussian", "--width", "10",
               "--band", "stretch=2800:3900", "--band", "bend=1450:1850",
               "-o", str(folder / "spectrum.csv"), "--plot", str(folder / "spectrum.png")]
    start = time.perf_counter()
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss in kB on Linux
    if process.returncode:
        print(process.stdout, process.stderr, file=sys.stderr)
        sys.exit(process.returncode)
    print(process.stdout.strip())
    rows = sum(1 for line in open(folder / "spectrum.csv") if not line.startswith("#")) - 1
    print(f"wall time {wall:.2f} s (CPU {cpu:.2f} s), peak memory {peak_mb:.0f} MB (child RSS), threads {threads}, "
          f"CSV rows {rows}, PNG {os.path.getsize(folder / 'spectrum.png') / 1e3:.0f} kB, "
          f"load average {os.getloadavg()[0]:.2f}")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
