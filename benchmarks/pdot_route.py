"""Cost per frame of ``aiida-irspec pdot`` along a long liquid-water trajectory, next to one spherical expansion.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/pdot_route.py \
        [--frames 100000] [--memory-frames 10000] [--velocity-frames 2000] [--models both|default|auto]
        [--output benchmarks/results/pdot_route.md]

- Structure: 64 H2O (192 atoms, 1 g/cm^3, the campaign's water_64.vasp). Trajectory: every atom oscillates
  about its site with random frequencies (50-3700 cm^-1) and amplitudes (0.03-0.1 A), stored at every 0.5 fs
  step with velocities, written to an npz a chunk at a time (no 100k-frame array is ever held).
- Models: the default kind and ``--kind auto`` (which prints what it picks), both fitted to the Born charges of
  100 water-dimer structures (GFN2-xTB data of ``benchmarks/water_dimer.py``, generated on first use): the
  same species and descriptor as liquid water, so the cost per frame is that of a water model.
- One expansion: featomic's spherical expansion (the model's calculator: cutoff, radial and angular basis of
  the default descriptor, no gradients) of one frame per call, CPU time per frame over ``--expansion-frames``,
  measured before and after the runs (the lower kept: on a shared machine CPU times vary with the load).
- ``aiida-irspec pdot MODEL TRAJECTORY`` (route auto: P only, frames 0.5 fs apart) on the whole trajectory, for
  each model, in a child process: CPU time (all threads) and wall time per frame, peak RSS; the same on the
  first ``--memory-frames`` frames (peak RSS against trajectory length); and ``--route velocity`` on the first
  ``--velocity-frames`` frames (dP/dt from the velocities: two expansions per frame).

The CPU times do not depend much on the machine's load; the wall times do (the report prints ``uptime``).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from water_dimer import CACHE, generate  # noqa: E402
from zro2 import machine_line  # noqa: E402

from aiida_irspec.model import PolarizationModel  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
#: Frames of the trajectory on which one expansion and the P route are timed alternately, in this process.
INTERLEAVED_FRAMES = 64
STRUCTURES = (REPO / "aiida_irspec" / "campaign" / "specs" / "structures", REPO / "workflows" / "structures")
#: Runs a command and prints its resource usage (CPU of all its threads, peak RSS) as JSON on the last line.
MEASURE = ("import json, resource, subprocess, sys, time; start = time.perf_counter(); "
           "code = subprocess.run(sys.argv[1:]).returncode; wall = time.perf_counter() - start; "
           "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print(json.dumps({'code': code, 'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, "
           "'rss_mb': usage.ru_maxrss / 1024}))")


def water_structure(system):
    """64 H2O in their periodic cell (``water64``), or the water dimer of ``benchmarks/water_dimer.py`` (``dimer``,
    a molecule: small frames, for measuring memory against trajectory length quickly)."""
    import ase.io

    if system == "dimer":
        from ase.collections import s22

        return s22["Water_dimer"].copy()
    for folder in STRUCTURES:
        if (folder / "water_64.vasp").is_file():
            return ase.io.read(folder / "water_64.vasp")
    raise SystemExit(f"water_64.vasp not found in {', '.join(map(str, STRUCTURES))}")


def write_trajectory(path, atoms, n_frames, timestep=0.5, chunk=2000, seed=0):
    """An npz trajectory of ``n_frames`` frames ``timestep`` fs apart, written a chunk of frames at a time:
    ``x(t) = x0 + A sin(omega t + phi)`` per atom and axis (omega 50-3700 cm^-1, A 0.03-0.1 A), ``v = dx/dt``."""
    from aiida_irspec import units

    rng = np.random.default_rng(seed)
    shape = (len(atoms), 3)
    omega = rng.uniform(50.0, 3700.0, size=shape) * units.CM1_TO_RAD_PER_FS
    amplitude, phase = rng.uniform(0.03, 0.1, size=shape), rng.uniform(0, 2 * np.pi, size=shape)
    per_frame = {"positions": (n_frames, len(atoms), 3), "velocities": (n_frames, len(atoms), 3),
                 "cells": (n_frames, 3, 3)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in (("times", timestep * np.arange(n_frames)), ("numbers", atoms.numbers),
                            ("pbc", atoms.pbc)):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(value))
        for name, full in per_frame.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array_header_2_0(handle, {"descr": "<f8", "fortran_order": False, "shape": full})
                for lo in range(0, n_frames, chunk):
                    t = timestep * np.arange(lo, min(lo + chunk, n_frames))[:, None, None]
                    if name == "positions":
                        block = atoms.positions + amplitude * np.sin(omega * t + phase)
                    elif name == "velocities":
                        block = amplitude * omega * np.cos(omega * t + phase)
                    else:
                        block = np.broadcast_to(atoms.cell.array, (len(t), 3, 3))
                    handle.write(np.ascontiguousarray(block, dtype="<f8").tobytes())


def water_models(folder, kinds=("default", "auto")):
    """{label: path} of the default kind and/or of kind auto fitted to 100 water-dimer Born-charge structures."""
    from ase import Atoms

    if not CACHE.exists():
        generate(CACHE)
    data = np.load(CACHE)
    frames = [Atoms(data["numbers"], positions=p) for p in data["positions"]]
    born_index, born = data["born_index"], data["born_charges"]
    train = np.nonzero(np.arange(len(born_index)) % 3 != 2)[0]
    models = {}
    for kind in kinds:
        model = PolarizationModel(**({} if kind == "default" else {"kind": "auto"}))
        model.fit([frames[born_index[k]] for k in train], [born[k] for k in train])
        label = f"{kind} ({model.fitted_kind})" if kind == "default" else f"auto -> {model.fitted_kind}"
        models[label] = folder / f"{kind}.npz"
        model.save(models[label])
        print(f"  fitted {label} on {len(train)} water-dimer structures", flush=True)
    return models


def expansion_cost(atoms, n_frames, path):
    """CPU and wall seconds of one featomic spherical expansion (the default descriptor's) per frame."""
    import ase

    from aiida_irspec.campaign.pdot import NpzTrajectory
    from aiida_irspec.model import DescriptorSettings, FeatureSpace

    space = FeatureSpace(DescriptorSettings(), sorted(set(atoms.numbers.tolist())))
    with NpzTrajectory(path) as trajectory:
        chunk = next(trajectory.chunks(n_frames))
    frames = [ase.Atoms(numbers=atoms.numbers, positions=x, cell=atoms.cell, pbc=atoms.pbc) for x in chunk["positions"]]
    space._calculator.compute(frames[:2])  # warm up
    cpu, wall = time.process_time(), time.perf_counter()
    for frame in frames:
        space._calculator.compute(frame)
    return (time.process_time() - cpu) / len(frames), (time.perf_counter() - wall) / len(frames)


def interleaved_ratios(atoms, models, path, repeats=5):
    """CPU per frame of one expansion and of the P route (``predict_along`` streaming the npz trajectory ``path``,
    in this process) on all frames of ``path``, measured alternately ``repeats`` times, the lowest of each kept:
    {label: seconds}, the expansion under "expansion". Less sensitive to other jobs than two separate runs."""
    import ase

    from aiida_irspec.campaign.pdot import NpzTrajectory, predict_along
    from aiida_irspec.model import DescriptorSettings, FeatureSpace

    with NpzTrajectory(path) as trajectory:
        positions = np.concatenate([chunk["positions"] for chunk in trajectory.chunks()])
    frames = [ase.Atoms(numbers=atoms.numbers, positions=x, cell=atoms.cell, pbc=atoms.pbc) for x in positions]
    space = FeatureSpace(DescriptorSettings(), sorted(set(atoms.numbers.tolist())))
    loaded = {label: PolarizationModel.load(model) for label, model in models.items()}
    best = dict.fromkeys(["expansion", *loaded], np.inf)
    for _ in range(repeats):
        cpu = time.process_time()
        for frame in frames:
            space._calculator.compute(frame)
        best["expansion"] = min(best["expansion"], (time.process_time() - cpu) / len(frames))
        for label, model in loaded.items():
            cpu = time.process_time()
            with NpzTrajectory(path) as trajectory:
                predict_along(model, trajectory)
            best[label] = min(best[label], (time.process_time() - cpu) / len(frames))
    return best


def run_pdot(model, trajectory, output, *options):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}
    executable = pathlib.Path(sys.executable).parent / "aiida-irspec"
    command = [sys.executable, "-c", MEASURE, str(executable if executable.exists() else shutil.which("aiida-irspec")),
               "pdot", str(model), str(trajectory), "-o", str(output), *options]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    usage = json.loads(result.stdout.strip().splitlines()[-1])
    if usage["code"]:
        raise SystemExit(f"pdot failed ({usage['code']}): {result.stdout}{result.stderr}")
    return usage


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--memory-frames", type=int, default=10_000, help="shorter run: peak RSS against length")
    parser.add_argument("--velocity-frames", type=int, default=2000, help="frames of the velocity-route run")
    parser.add_argument("--expansion-frames", type=int, default=200)
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="for the trajectory files (large)")
    parser.add_argument("--system", choices=("water64", "dimer"), default="water64",
                        help="liquid water (192 atoms) or the water dimer (6 atoms: memory against length, fast)")
    parser.add_argument("--models", choices=("both", "default", "auto"), default="both",
                        help="the default kind, the kind --kind auto picks, or both")
    parser.add_argument("--output", type=pathlib.Path, default=None, help="markdown report")
    arguments = parser.parse_args()
    started = time.perf_counter()
    lines = [machine_line(), ""]
    print(lines[0], flush=True)
    atoms = water_structure(arguments.system)
    with tempfile.TemporaryDirectory(dir=arguments.workdir) as folder:
        folder = pathlib.Path(folder)
        files = {}
        for n in sorted({arguments.frames, arguments.memory_frames, arguments.velocity_frames, INTERLEAVED_FRAMES}):
            files[n] = folder / f"water_{n}.npz"
            write_trajectory(files[n], atoms, n)
        print(f"  trajectories written ({', '.join(map(str, files))} frames of {len(atoms)} atoms)", flush=True)
        before, wall = expansion_cost(atoms, arguments.expansion_frames, files[arguments.frames])
        print(f"  one expansion: {1e3 * before:.1f} ms CPU per frame", flush=True)
        models = water_models(folder, ("default", "auto") if arguments.models == "both" else (arguments.models,))
        results = []
        for label, model in models.items():
            runs = [("auto", arguments.frames, ()), ("auto", arguments.memory_frames, ()),
                    ("velocity", arguments.velocity_frames, ("--route", "velocity"))]
            for route, n, options in runs:
                usage = run_pdot(model, files[n], folder / "out.npz", *options)
                with np.load(folder / "out.npz") as data:
                    results.append((label, f"{route} -> {data['route']}", n, usage))
                print(f"  {label}, {results[-1][1]}, {n} frames: {1e3 * usage['cpu'] / n:.1f} ms CPU per frame, "
                      f"peak RSS {usage['rss_mb']:.0f} MB", flush=True)
        after, _ = expansion_cost(atoms, arguments.expansion_frames, files[arguments.frames])
        ratios = interleaved_ratios(atoms, models, files[INTERLEAVED_FRAMES])
    expansion = min(before, after)
    system = "Liquid water, 64 H2O (192 atoms)" if arguments.system == "water64" else "Water dimer (6 atoms)"
    lines += [f"{system}, frames 0.5 fs apart with velocities; one featomic spherical expansion (default descriptor, "
              f"no gradients, one frame per call): {1e3 * before:.1f} ms CPU before the runs ({1e3 * wall:.1f} ms "
              f"wall), {1e3 * after:.1f} ms after; the ratios use the lower.", "",
              "| model | route | frames | CPU per frame (ms) | CPU / one expansion | wall per frame (ms) "
              "| peak RSS (MB) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {label} | {route} | {n} | {1e3 * usage['cpu'] / n:.1f} | {usage['cpu'] / n / expansion:.2f} | "
              f"{1e3 * usage['wall'] / n:.1f} | {usage['rss_mb']:.0f} |" for label, route, n, usage in results]
    routes = "; ".join(f"{label} {1e3 * value:.1f} ms ({value / ratios['expansion']:.2f} x)"
                       for label, value in ratios.items() if label != "expansion")
    lines += ["", f"In this process, the P route (route auto, streaming an npz of {INTERLEAVED_FRAMES} frames) and one "
              f"expansion measured alternately (lowest of 5): one expansion {1e3 * ratios['expansion']:.1f} ms CPU "
              f"per frame; {routes}.",
              "", "CPU and wall per frame of the command include starting it (imports, reading the model), about 1-2 s "
              "per run in all.", f"load at the end: {os.getloadavg()[0]:.1f}"]
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s")
    if arguments.output:
        arguments.output.write_text(text)


if __name__ == "__main__":
    main()
