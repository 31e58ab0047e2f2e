"""Benchmark: reference calculations needed to reach a Born-charge error, uncertainty-driven vs random selection.

The same pool for both: a GFN2-xTB (tblite) Langevin NVT run of the water dimer at 300 K, every frame with
its tblite Born charges. A fixed random test set (never selected) measures the true error: RMSE of Z over
all entries, |e|. Both strategies start from the same farthest-point seed set, add ``batch`` frames per
iteration (aiida_irspec.campaign.selection, the code irspec.select runs) and refit the model
(aiida_irspec.model.PolarizationModel, the campaign's default descriptor); random selection is repeated
with several seeds.

    OMP_NUM_THREADS=1 python benchmarks/active_learning_vs_random.py -o benchmarks/results/active_learning

writes curves.csv, curves.png and summary.json (references needed to reach the target and their ratio).
"""

import argparse
import json
import pathlib
import time

import numpy as np


def pool_with_references(steps, stride, skip, seed):
    """(frames, Born charges) of a tblite NVT run of the water dimer, frames after ``skip`` stored ones."""
    import ase
    import ase.io

    from aiida_irspec.engines.md import run_md
    from aiida_irspec.engines.tblite import born_charges, make_calculator

    structure = ase.io.read(pathlib.Path(__file__).resolve().parents[1] / "workflows/structures/water_dimer.xyz")
    result = run_md(structure, make_calculator(), ensemble="nvt", temperature=300.0, steps=steps, timestep=0.5,
                    stride=stride, seed=seed, friction=10.0)
    frames = [ase.Atoms(numbers=result.numbers, positions=x) for x in result.positions[skip:]]
    return frames, [born_charges(atoms, accuracy=0.1) for atoms in frames]


def learning_curve(strategy, frames, charges, test, seed_set, batch, budget, descriptor, seed):
    """[(references, test RMSE of Z)] after each fit."""
    from aiida_irspec.campaign.selection import choose
    from aiida_irspec.model import PolarizationModel, structure_descriptors

    descriptors = structure_descriptors(frames, descriptor)
    truth = np.array([charges[k] for k in test])
    chosen, curve = list(seed_set), []
    iteration = 0
    while True:
        model = PolarizationModel(descriptor, baseline="zero").fit([frames[k] for k in chosen],
                                                                   [charges[k] for k in chosen])
        predicted = model.predict_born_charges([frames[k] for k in test])
        curve.append((len(chosen), float(np.sqrt(np.mean((predicted - truth) ** 2)))))
        if len(chosen) >= budget:
            return curve
        uncertainty = model.uncertainty(frames) if strategy == "uncertainty" else None
        iteration += 1
        picks = choose(strategy, min(batch, budget - len(chosen)), n_pool=len(frames), descriptors=descriptors,
                       uncertainty=uncertainty, selected=chosen + list(test), seed=seed + iteration)
        chosen += [int(k) for k in picks]


def needed(curve, target):
    """References at which the curve first reaches ``target`` (None if never)."""
    return next((n for n, error in curve if error <= target), None)


def main():
    from aiida_irspec.campaign.selection import farthest_point, random_choice, standardise
    from aiida_irspec.model import DescriptorSettings, structure_descriptors

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="benchmarks/results/active_learning")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--skip", type=int, default=100, help="stored frames left out as equilibration")
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--initial", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--random-seeds", type=int, default=3)
    args = parser.parse_args()
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    frames, charges = pool_with_references(args.steps, args.stride, args.skip, seed=11)
    print(f"pool: {len(frames)} frames with tblite Born charges ({time.perf_counter() - started:.0f} s)", flush=True)
    descriptor = DescriptorSettings(cutoff=5.5)
    test = random_choice(len(frames), args.test, seed=123)
    descriptors = standardise(structure_descriptors(frames, descriptor))
    seed_set = [int(k) for k in farthest_point(descriptors, args.initial, selected=test)]

    curves = {"uncertainty": learning_curve("uncertainty", frames, charges, test, seed_set, args.batch, args.budget,
                                            descriptor, 0)}
    print("uncertainty:", curves["uncertainty"], flush=True)
    for seed in range(args.random_seeds):
        curves[f"random_{seed}"] = learning_curve("random", frames, charges, test, seed_set, args.batch,
                                                  args.budget, descriptor, 1000 * (seed + 1))
        print(f"random {seed}:", curves[f"random_{seed}"], flush=True)

    references = [n for n, _ in curves["uncertainty"]]
    random_mean = np.mean([[e for _, e in curves[f"random_{s}"]] for s in range(args.random_seeds)], axis=0)
    target = float(random_mean[-1])  # what random selection reaches with the whole budget
    n_uncertainty = needed(curves["uncertainty"], target)
    n_random = needed(list(zip(references, random_mean)), target)
    summary = {"pool_frames": len(frames), "test_frames": args.test, "initial": args.initial, "batch": args.batch,
               "budget": args.budget, "target_error": target, "references_uncertainty": n_uncertainty,
               "references_random": n_random,
               "ratio": None if n_uncertainty is None or n_random is None else n_uncertainty / n_random,
               "curves": curves, "wall_time_s": time.perf_counter() - started,
               "descriptor": descriptor.to_dict()}
    (output / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(output / "curves.csv", "w") as handle:
        handle.write("references,uncertainty," + ",".join(f"random_{s}" for s in range(args.random_seeds)) + "\n")
        for k, n in enumerate(references):
            row = [curves["uncertainty"][k][1]] + [curves[f"random_{s}"][k][1] for s in range(args.random_seeds)]
            handle.write(f"{n}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(references, [e for _, e in curves["uncertainty"]], "o-", label="uncertainty")
    for s in range(args.random_seeds):
        ax.plot(references, [e for _, e in curves[f"random_{s}"]], ":", color="gray",
                label="random (seeds)" if s == 0 else None)
    ax.plot(references, random_mean, "s-", color="k", label="random (mean)")
    ax.axhline(target, color="r", ls="--", lw=1, label="target")
    ax.set_xlabel("reference calculations")
    ax.set_ylabel("test RMSE of Z (|e|)")
    ax.legend()
    figure.savefig(output / "curves.png", dpi=110)
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, indent=1))


if __name__ == "__main__":
    main()
