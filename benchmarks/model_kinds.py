"""Which model kind for which system: dipole, monopole, combined and polynomial, measured side by side.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python benchmarks/model_kinds.py \
        [--output benchmarks/results/model_kinds.md] [--figure docs/images/model_kinds.png]

- ZrO2 (the 60 shared DFPT structures, 96 atoms): 5-fold cross-validated RMSE of Z (whole structures
  held out) with each kind fitted on all 60, fit time, prediction time per frame for P (batched) and Z;
  also ``kind="auto"`` (one pass over the data, three solves) and what it picks.
- Water dimer (GFN2-xTB reference data of ``benchmarks/water_dimer.py``, generated on first use): trained
  on the Born charges of 100 structures only; relative RMSE (RMSE / std of the test set) of P on 500
  unseen structures and of Z on 50.

The descriptor is the default :class:`DescriptorSettings` unless ``--set name=value`` (repeatable, e.g.
``--set n_radial=6 --set l_max=7``) says otherwise; ``--folds`` sets the cross-validation folds (5). The report
names the machine and its single-thread dgemm speed, so that fit times can be compared across machines.
"""

import argparse
import pathlib
import sys
import time

import numpy as np
from ase import Atoms

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from water_dimer import CACHE, generate  # noqa: E402
from zro2 import SHARED, load, machine_line, timed, write_report  # noqa: E402

from aiida_irspec.model import DescriptorSettings, PolarizationModel  # noqa: E402
from aiida_irspec.model.kinds import KINDS  # noqa: E402


def zro2_rows(frames, charges, descriptor, n_folds):
    rows = []
    for kind in KINDS + ("auto",):
        cpu = time.process_time()
        seconds, model = timed(PolarizationModel(descriptor, kind=kind, n_folds=n_folds).fit, frames, charges)
        cpu = time.process_time() - cpu
        test = frames[:12]
        p_seconds, _ = timed(model.predict_polarization, test, repeats=2)
        z_seconds, _ = timed(model.predict_born_charges, test[:4], repeats=2)
        label = kind if kind != "auto" else f"auto -> {model.fitted_kind}"
        rows.append((label, model.metrics["cv_rmse"], model.metrics["training"]["born_charges_rmse"]["all"],
                     seconds, cpu, 1e3 * p_seconds / len(test), 1e3 * z_seconds / 4, model.metrics["n_columns"]))
        print(f"  ZrO2 {label}: CV {rows[-1][1]:.4f} |e|, fit {seconds:.1f} s (CPU {cpu:.1f} s)", flush=True)
    return rows


def water_rows(descriptor):
    if not CACHE.exists():
        generate(CACHE)
    data = np.load(CACHE)
    frames = [Atoms(data["numbers"], positions=p) for p in data["positions"]]
    dipoles, born_index, born = data["dipoles"], data["born_index"], data["born_charges"]
    test = np.arange(1, len(frames), 2)
    p_std = np.sqrt(np.mean((dipoles[test] - dipoles[test].mean(0)) ** 2))
    validation = np.arange(len(born_index)) % 3 == 2
    train = np.nonzero(~validation)[0]
    z_std = np.sqrt(np.mean((born[validation] - born[validation].mean(0)) ** 2))
    rows = []
    for kind in KINDS:
        seconds, model = timed(PolarizationModel(descriptor, kind=kind).fit,
                               [frames[born_index[k]] for k in train], [born[k] for k in train])
        p = model.predict_polarization([frames[k] for k in test])
        z = model.predict_born_charges([frames[born_index[k]] for k in np.nonzero(validation)[0]])
        rows.append((kind, 100 * np.sqrt(np.mean((p - dipoles[test]) ** 2)) / p_std,
                     100 * np.sqrt(np.mean((z - born[validation]) ** 2)) / z_std, seconds, model.metrics["baseline"]))
        print(f"  water dimer {kind}: P {rows[-1][1]:.2f} %, Z {rows[-1][2]:.2f} %", flush=True)
    return rows


def markdown(zro2, water, descriptor, n_folds, machine):
    lines = [machine, "", f"Descriptor: {descriptor}", "",
             f"ZrO2, 60 structures of 96 atoms ({n_folds}-fold cross-validation, whole structures held out):", "",
             "| kind | CV RMSE Z (e) | training RMSE Z (e) | fit (s) | fit CPU (s) | P per frame (ms) "
             "| Z per frame (ms) | columns |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {cv:.4f} | {tr:.4f} | {fit:.1f} | {cpu:.1f} | {p:.1f} | {z:.0f} | {c} |"
              for k, cv, tr, fit, cpu, p, z, c in zro2]
    lines += ["", "Water dimer, GFN2-xTB, trained on the Born charges of 100 structures only:", "",
              "| kind | relative RMSE P (500 unseen) | relative RMSE Z (50 unseen) | fit (s) | baseline |",
              "|---|---|---|---|---|"]
    lines += [f"| {k} | {p:.2f} % | {z:.2f} % | {fit:.1f} | {b} |" for k, p, z, fit, b in water]
    return "\n".join(lines) + "\n"


def figure(zro2, water, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    labels = [row[0] for row in zro2]
    axes[0].bar(labels, [row[1] for row in zro2], color="tab:blue")
    axes[0].axhline(0.090, color="grey", ls="--", label="reference implementation")
    axes[0].set_ylabel("ZrO2 CV RMSE of Z (|e|)")
    axes[0].set_ylim(0, 0.1 + max(row[1] for row in zro2) * 0.2)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].bar(labels, [row[3] for row in zro2], color="tab:orange")
    axes[1].set_ylabel("fit on 60 ZrO2 structures (s)")
    axes[2].bar([row[0] for row in water], [row[1] for row in water], color="tab:green")
    axes[2].set_ylabel("water dimer: relative RMSE of P (%)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=SHARED)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a DescriptorSettings field to change, e.g. l_max=7 (repeatable)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (whole structures)")
    parser.add_argument("--output", type=pathlib.Path, default=None, help="markdown table")
    parser.add_argument("--figure", type=pathlib.Path, default=None, help="PNG")
    arguments = parser.parse_args()
    descriptor = DescriptorSettings(**dict(_setting(text) for text in arguments.set))
    machine = machine_line()
    print(machine, flush=True)
    frames, charges = load(arguments.data)
    started = time.perf_counter()
    zro2 = zro2_rows(frames, charges, descriptor, arguments.folds)
    water = water_rows(descriptor)
    write_report(markdown(zro2, water, descriptor, arguments.folds, machine), started, arguments.output,
                 arguments.figure,
                 lambda path: figure(zro2, water, path))


def _setting(text):
    """``name=value`` -> (name, value) with the value typed like the DescriptorSettings default."""
    import dataclasses

    name, _, value = text.partition("=")
    fields = {field.name: field for field in dataclasses.fields(DescriptorSettings)}
    if name not in fields or not value:
        raise SystemExit(f"--set needs NAME=VALUE with NAME one of {', '.join(fields)}; got {text!r}")
    return name, type(fields[name].default)(value)


if __name__ == "__main__":
    main()
