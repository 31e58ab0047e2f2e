"""The figures of docs/spectra.md from synthetic water-like runs (seconds; no engine needed).

    python benchmarks/spectra_doc_figures.py [--out docs/images]

spectra_band.png     mean of 20 runs (100k steps of 0.25 fs) with its +-2 standard-error band
spectra_runs.png     the band of 5 runs against that of 20 runs (it shrinks as 1/sqrt(runs))
spectra_quantum.png  the same runs with the quantum correction factors, overlaid (log scale)
"""

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from spectrum_throughput import water_like_pdot  # noqa: E402

from aiida_irspec.spectra import average_spectra, green_kubo_spectrum  # noqa: E402
from aiida_irspec.spectra.plotting import plot_spectra  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    runs = [water_like_pdot(rng, 100_000, 0.25) for _ in range(20)]
    common = dict(dt=0.25, temperature=300.0, volume=1000.0, window="gaussian", width_cm1=10.0,
                  max_frequency_cm1=4500.0)

    def averaged(pdots, quantum_correction="none"):
        return average_spectra([green_kubo_spectrum(p, quantum_correction=quantum_correction, **common) for p in pdots])

    all_runs = averaged(runs)
    plot_spectra([all_runs], labels=["20 runs, 300 K (+-2 s.e.)"], path=out / "spectra_band.png", xlim=(0, 4000),
                 dpi=80)
    plot_spectra([averaged(runs[:5]), all_runs], labels=["5 runs", "20 runs"], path=out / "spectra_runs.png",
                 xlim=(2800, 4000), dpi=80)
    figure = plot_spectra([all_runs] + [averaged(runs, q) for q in ("harmonic", "standard", "schofield")],
                          labels=["none (eq. 5)", "harmonic", "standard", "Schofield"], xlim=(0, 4000),
                          title="quantum correction factors, 300 K")
    figure.axes[0].set_yscale("log")
    figure.axes[0].set_ylim(1e-2, 3e4)
    figure.savefig(out / "spectra_quantum.png", dpi=80)
    for name in ("spectra_band.png", "spectra_runs.png", "spectra_quantum.png"):
        print(f"{out / name}: {(out / name).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
