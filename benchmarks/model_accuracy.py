"""How far the models go on ZrO2: descriptor variants, the polynomial kind, and learning curves.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python benchmarks/model_accuracy.py \
        [--output benchmarks/results/model_accuracy.md] [--figure docs/images/model_accuracy.png]

- Variants of the combined kind on the 60 shared structures (96 atoms): 5-fold cross-validated RMSE of Z
  (whole structures held out), training RMSE, number of columns and fit time, for the default descriptor and
  for one change at a time (no 4-body products, fewer or more angular channels, more radial functions, more
  invariants in the monopole part, more transfer channels, wider Gaussians, the former defaults); then the
  polynomial kind with 2, 3 and 4 radial channels of densities and with products of degree 2; then larger
  bases (n_radial 5, l_max 5, transfer_radial 3: up to 6696 columns, about 6 GB of memory).
- Learning curves of the dipole, combined and polynomial kinds: trained on 12, 24, 36 and 48 structures
  (every fifth structure from 4 on is never trained on), RMSE of Z on those 12 held-out structures.
  ``--curves-only`` skips the variants.

If more columns lower the training error but not the cross-validated one, and more structures barely lower
the held-out error, the error left is a floor of this model class on these data, not of the fit.
"""

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from zro2 import SHARED, load, machine_line, timed, write_report  # noqa: E402

from aiida_irspec.model import DescriptorSettings, PolarizationModel  # noqa: E402

VARIANTS = (  # (label, kind, descriptor changes)
    ("default", "combined", {}),
    ("body_order 3 (no 4-body products)", "combined", {"body_order": 3}),
    ("l_max 3", "combined", {"l_max": 3}),
    ("l_max 5", "combined", {"l_max": 5}),
    ("n_radial 5", "combined", {"n_radial": 5}),
    ("invariant_radial 4", "combined", {"invariant_radial": 4}),
    ("transfer_radial 3", "combined", {"transfer_radial": 3}),
    ("gaussian_width 0.6", "combined", {"gaussian_width": 0.6}),
    ("n_radial 5, l_max 6, body_order 3 (session 4 default)", "combined", {"n_radial": 5, "l_max": 6, "body_order": 3}),
    ("polynomial kind (polynomial_radial 2, the default)", "polynomial", {}),
    ("polynomial kind, polynomial_radial 3", "polynomial", {"polynomial_radial": 3}),
    ("polynomial kind, polynomial_radial 4", "polynomial", {"polynomial_radial": 4}),
    ("polynomial kind, polynomial_degree 2 (radial 1)", "polynomial", {"polynomial_radial": 1, "polynomial_degree": 2}),
    ("combined kind, n_radial 5, l_max 5", "combined", {"n_radial": 5, "l_max": 5}),
    ("polynomial kind, n_radial 5", "polynomial", {"n_radial": 5}),
    ("polynomial kind, n_radial 5, l_max 5", "polynomial", {"n_radial": 5, "l_max": 5}),
    ("polynomial kind, n_radial 5, l_max 5, transfer_radial 3", "polynomial",
     {"n_radial": 5, "l_max": 5, "transfer_radial": 3}),
)
SIZES = (12, 24, 36, 48)


def variant_rows(frames, charges):
    rows = []
    for label, kind, overrides in VARIANTS:
        descriptor = dataclasses.replace(DescriptorSettings(), **overrides)
        seconds, model = timed(PolarizationModel(descriptor, kind=kind).fit, frames, charges)
        rows.append((label, model.metrics["cv_rmse"], model.metrics["training"]["born_charges_rmse"]["all"],
                     model.metrics["n_columns"], seconds))
        print(f"  {label}: CV {rows[-1][1]:.4f}, training {rows[-1][2]:.4f} |e|, "
              f"{rows[-1][3]} columns, {seconds:.0f} s", flush=True)
    return rows


def learning_curves(frames, charges):
    held = np.arange(4, len(frames), 5)
    pool = np.setdiff1d(np.arange(len(frames)), held)
    truth = np.array([charges[k] for k in held])
    curves = {}
    for kind in ("dipole", "combined", "polynomial"):
        curves[kind] = []
        for n in SIZES:
            chosen = pool[np.round(np.linspace(0, len(pool) - 1, n)).astype(int)]
            model = PolarizationModel(kind=kind).fit([frames[k] for k in chosen], [charges[k] for k in chosen])
            predicted = model.predict_born_charges([frames[k] for k in held])
            curves[kind].append(float(np.sqrt(np.mean((predicted - truth) ** 2))))
            print(f"  {kind}, {n} structures: held-out RMSE {curves[kind][-1]:.4f} |e|", flush=True)
    return curves


def markdown(variants, curves, machine):
    lines = [machine, "", f"Default descriptor: {DescriptorSettings()}", "",
             "ZrO2, 60 structures, the combined kind with one change at a time, then the polynomial kind:", "",
             "| variant | CV RMSE Z (e) | training RMSE Z (e) | columns | fit (s) |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {cv:.4f} | {train:.4f} | {columns} | {fit:.0f} |"
              for label, cv, train, columns, fit in variants]
    lines += ["", "Learning curves: RMSE of Z (e) on 12 structures never trained on:", "",
              "| structures | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    lines += [f"| {n} | " + " | ".join(f"{curves[kind][k]:.4f}" for kind in curves) + " |"
              for k, n in enumerate(SIZES)]
    return "\n".join(lines) + "\n"


def figure(variants, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    labels = [row[0] for row in variants]
    axes[0].barh(labels, [row[1] for row in variants], color="tab:blue", label="cross-validated")
    axes[0].barh(labels, [row[2] for row in variants], color="tab:cyan", height=0.4, label="training")
    axes[0].axvline(0.055, color="grey", ls="--", lw=0.8, label="target 0.055")
    axes[0].set_xlim(0.045, 0.075)
    axes[0].set_xlabel("RMSE of Z (|e|)")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc="lower right")
    for kind, values in curves.items():
        axes[1].plot(SIZES, values, "o-", label=kind)
    axes[1].axhline(0.055, color="grey", ls="--", lw=0.8)
    axes[1].set(xlabel="training structures", ylabel="RMSE of Z on 12 unseen (|e|)", xticks=SIZES)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=SHARED)
    parser.add_argument("--output", type=pathlib.Path, default=None, help="markdown table")
    parser.add_argument("--figure", type=pathlib.Path, default=None, help="PNG")
    parser.add_argument("--curves-only", action="store_true", help="only the learning curves")
    arguments = parser.parse_args()
    machine = machine_line()
    print(machine, flush=True)
    frames, charges = load(arguments.data)
    started = time.perf_counter()
    variants = [] if arguments.curves_only else variant_rows(frames, charges)
    curves = learning_curves(frames, charges)
    write_report(markdown(variants, curves, machine), started, arguments.output,
                 arguments.figure if variants else None, lambda path: figure(variants, curves, path))


if __name__ == "__main__":
    main()
