"""Polarization model on the shared ZrO2 set (60 DFPT structures, 96 atoms): accuracy and speed.

Run from the repository root (the fit holds BLAS to one thread while its own threads build and fold the
designs, and solves with the threads given here):

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python benchmarks/zro2.py [--figure docs/images/model_zro2_parity.png]

Reports, for the default descriptor:
- fit time and peak memory (max RSS of this process) of ``PolarizationModel().fit`` on all 60 structures;
- the learning curve for 10, 20, 40, 60 structures spread over the set: 5-fold cross-validated RMSE of Z
  (frames held out whole) and the RMSE on the structures left out;
- formal (Zr +4, O -2) against species-mean baselines, both on 60 structures (5-fold CV);
- the error on the last 12 structures of a model fitted to the first 48 (parity plot of those);
- prediction time per frame for P (batched), dP/dt (central difference along random velocities;
  also the analytic route, and their difference) and Z.
"""

import argparse
import pathlib
import resource
import time

import numpy as np

from aiida_irspec.io.vasp import read_born_charges
from aiida_irspec.model import PolarizationModel

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "zro2"


def load(directory):
    paths = sorted(directory.glob("OUTCAR.*.gz"), key=lambda p: int(p.name.split(".")[1]))
    records = [read_born_charges(p) for p in paths]
    return [r.atoms for r in records], [r.born_charges for r in records]


def write_report(text, started, output=None, figure_path=None, draw=None):
    """Print a benchmark's markdown ``text`` and its wall time since ``started``; write the text to ``output``
    and, with ``figure_path``, call ``draw(figure_path)``."""
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s")
    if output:
        output.write_text(text)
    if figure_path:
        draw(figure_path)


def timed(function, *args, repeats=1, **kwargs):
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def machine_line():
    """One line naming the machine and its single-thread dgemm speed, so timings can be compared across machines."""
    import os
    import platform

    from threadpoolctl import threadpool_limits

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    a = np.random.default_rng(0).standard_normal((2000, 2000))
    with threadpool_limits(1, user_api="blas"):
        seconds, _ = timed(np.matmul, a, a, repeats=3)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"Machine: {model}, {os.cpu_count()} cores; dgemm on one thread {2 * 2000**3 / seconds / 1e9:.0f} GFlop/s; "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average {load} (1, 5, 15 min)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=SHARED)
    parser.add_argument("--figure", type=pathlib.Path, default=None, help="parity plot PNG")
    parser.add_argument("--skip-curve", action="store_true", help="only the 60-structure fit and the timings")
    arguments = parser.parse_args()
    frames, charges = load(arguments.data)
    print(machine_line())
    print(f"{len(frames)} structures of {len(frames[0])} atoms from {arguments.data}")

    seconds, model = timed(PolarizationModel().fit, frames, charges)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = model.metrics
    print(f"fit on 60: {seconds:.1f} s, peak RSS {peak:.0f} MB, alpha {m['regularization']['alpha']:.3g} "
          f"({m['regularization']['method']}), {m['n_parameters']} parameters")
    print(f"  training RMSE Z: {m['training']['born_charges_rmse']}")
    print(f"  5-fold CV RMSE Z (formal baseline): {m['cv_rmse']:.4f} |e|")

    test = frames[:20]
    rng = np.random.default_rng(0)
    velocities = rng.normal(scale=0.01, size=(len(test), len(test[0]), 3))
    model.predict_polarization(test[:2])
    t_p, _ = timed(model.predict_polarization, test, repeats=3)
    t_pdot, central = timed(model.predict_pdot, test, velocities, repeats=3)
    t_pdot_a, analytic = timed(model.predict_pdot, test, velocities, method="analytic")
    t_z, z = timed(model.predict_born_charges, test, repeats=2)
    exact = np.einsum("fjab,fjb->fa", z, velocities)
    print(f"prediction per 96-atom frame: P {1e3 * t_p / len(test):.1f} ms, dP/dt {1e3 * t_pdot / len(test):.1f} ms "
          f"(central difference; analytic {1e3 * t_pdot_a / len(test):.1f} ms), Z {1e3 * t_z / len(test):.1f} ms")
    scale = np.abs(exact).max()
    print(f"  dP/dt routes: max |central - Z.v| / max |Z.v| = {np.abs(central - exact).max() / scale:.1e}, "
          f"analytic {np.abs(analytic - exact).max() / scale:.1e}")

    if not arguments.skip_curve:
        print("learning curve: n structures evenly spread over the set; RMSE of Z (|e|) by 5-fold CV inside them "
              "and on the 60 - n structures left out")
        for n in (10, 20, 40, 60):
            chosen = np.round(np.linspace(0, len(frames) - 1, n)).astype(int)
            rest = np.setdiff1d(np.arange(len(frames)), chosen)
            fitted = model if n == len(frames) else PolarizationModel().fit([frames[k] for k in chosen],
                                                                            [charges[k] for k in chosen])
            line = f"  {n:3d} structures: CV {fitted.metrics['cv_rmse']:.4f}"
            if len(rest):
                predicted = fitted.predict_born_charges([frames[k] for k in rest])
                line += f", left out {np.sqrt(np.mean((predicted - np.array([charges[k] for k in rest])) ** 2)):.4f}"
            print(line + f" (training {fitted.metrics['training']['born_charges_rmse']['all']:.4f})")
        mean = PolarizationModel(baseline="mean").fit(frames, charges)
        mean_charges = {k: round(v, 3) for k, v in mean.metrics["baseline_charges"].items()}
        print(f"baseline formal {model.metrics['baseline_charges']}: CV {model.metrics['cv_rmse']:.4f}; "
              f"species mean {mean_charges}: CV {mean.metrics['cv_rmse']:.4f}")

    first = PolarizationModel().fit(frames[:48], charges[:48])
    predicted = first.predict_born_charges(frames[48:])
    truth = np.array(charges[48:])
    held = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    print(f"fitted on the first 48, RMSE of Z on the last 12: {held:.4f} |e|")
    if arguments.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        numbers = frames[0].numbers
        fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=110)
        for z, name, colour in ((40, "Zr", "tab:blue"), (8, "O", "tab:red")):
            ax.scatter(truth[:, numbers == z].ravel(), predicted[:, numbers == z].ravel(), s=2, alpha=0.4,
                       color=colour, label=name, rasterized=True)
        lims = [truth.min() - 0.3, truth.max() + 0.3]
        ax.plot(lims, lims, color="k", lw=0.6)
        ax.set(xlim=lims, ylim=lims, xlabel="DFPT Z (|e|)", ylabel="model Z (|e|)",
               title=f"ZrO2, 12 unseen: RMSE {held:.3f} |e|")
        ax.title.set_fontsize(9)
        ax.legend(markerscale=4, fontsize=8)
        fig.tight_layout()
        fig.savefig(arguments.figure)
        print(f"parity plot: {arguments.figure}")


if __name__ == "__main__":
    main()
