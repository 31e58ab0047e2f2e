"""Peer check of the spectra: low-temperature MD spectra of GFN2-xTB molecules (water, formaldehyde) against the
harmonic IR frequencies and intensities of ASE's ``ase.vibrations.Infrared`` with the same calculator.

    python benchmarks/tblite_water_ir.py [--systems H2O H2CO] [--runs 3] [--steps 16000] [--figure PNG]

1. Relax each molecule with tblite (GFN2-xTB, aiida_irspec.engines.tblite.make_calculator, accuracy 0.01:
   tblite's default 1.0 leaves SCF noise that drains a 20 K NVE run), then ASE Infrared (central
   differences of forces and of tblite's dipole): harmonic wavenumbers and intensities in km/mol.
2. Start ``--runs`` NVE runs (aiida_irspec.engines.md.run_md, velocity Verlet, 0.25 fs) from states with each
   vibrational normal mode at its mean thermal energy kT and a random phase (no rotation, no translation),
   recording the exact tblite dipole at every step.
3. Spectrum per run from the dipole series (spectrum_from_polarization, molecules=1 -> (km/mol)/cm^-1),
   Gaussian window, averaged; per band: centroid vs the harmonic wavenumber (target 2%), integral vs the
   harmonic intensity (target 10%).

Why equipartition and not Maxwell-Boltzmann starts: a thermal ensemble gives each mode an exponentially
distributed energy (relative spread 100%), and a classical band's intensity is proportional to its mode's
energy / kT, so checking intensities to 10% that way needs hundreds of runs. The classical integrated intensity
of a harmonic mode with mean energy kT is N_A |d mu/d Q|^2 / (12 eps0 c^2), the harmonic intensity, at any T.
"""

import argparse
import json
import tempfile
import time

import numpy as np

from aiida_irspec import units


def harmonic_reference(atoms, calculator, workdir):
    """Relaxed atoms, and ASE Infrared: wavenumbers (3N,) cm^-1, intensities (3N,) km/mol, modes (3N, 3N)."""
    from ase.optimize import BFGS
    from ase.vibrations import Infrared

    atoms = atoms.copy()
    atoms.calc = calculator
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=500)
    ir = Infrared(atoms, name=f"{workdir}/ir", delta=0.005, nfree=4)
    ir.clean()
    ir.run()
    ir.read()
    wavenumbers = ir.get_frequencies().real
    intensities = ir.intensities * ir.intensity_prefactor("km/mol")[0]
    omegas = ir.hnu.real / units.HBAR_EV_FS  # rad/fs
    return atoms, wavenumbers, intensities, omegas, ir.modes  # ir.modes[k]: mass-weighted eigenvector k


def equipartition_state(rng, atoms, omegas, modes, temperature, n_vib):
    """Positions (N, 3) A and velocities (N, 3) A/fs with each of the top n_vib modes at harmonic energy kT."""
    masses = np.repeat(atoms.get_masses(), 3)
    kt = units.kelvin_to_ev(temperature) / units.AMU_A2_PER_FS2_IN_EV  # amu (A/fs)^2
    x = np.zeros(masses.size)
    v = np.zeros(masses.size)
    for k in range(len(omegas) - n_vib, len(omegas)):
        phase = rng.uniform(0, 2 * np.pi)
        q, qdot = np.sqrt(2 * kt) / omegas[k] * np.cos(phase), -np.sqrt(2 * kt) * np.sin(phase)
        x += q * modes[k] / np.sqrt(masses)
        v += qdot * modes[k] / np.sqrt(masses)
    return atoms.positions + x.reshape(-1, 3), v.reshape(-1, 3)


def group_modes(wavenumbers, intensities, merge_cm1):
    """Harmonic modes -> bands: modes closer than merge_cm1 form one band. Returns [(mode indices, position, A)]
    with the intensity-weighted mean wavenumber and the summed intensity (km/mol)."""
    order = np.argsort(wavenumbers)
    groups = [[order[0]]]
    for k in order[1:]:
        (groups[-1].append(k) if wavenumbers[k] - wavenumbers[groups[-1][-1]] < merge_cm1 else groups.append([k]))
    bands = []
    for members in groups:
        weight = intensities[members]
        position = np.average(wavenumbers[members], weights=weight) if weight.sum() > 0 else wavenumbers[members].mean()
        bands.append((members, float(position), float(weight.sum())))
    return bands


def compare(name, args):
    """Harmonic reference and MD spectrum of one ASE molecule; returns (rows, averaged spectrum, harmonic lines)."""
    from ase.build import molecule

    from aiida_irspec.engines.md import run_md
    from aiida_irspec.engines.tblite import make_calculator
    from aiida_irspec.spectra import average_spectra, spectrum_from_polarization

    started = time.perf_counter()
    calculator = lambda: make_calculator(accuracy=args.accuracy)  # noqa: E731
    atoms, wavenumbers, intensities, omegas, modes = harmonic_reference(molecule(name), calculator(), args.workdir)
    n_vib = 3 * len(atoms) - 6
    harmonic_nu, harmonic_int = wavenumbers[-n_vib:], intensities[-n_vib:]
    print(f"{name} harmonic (ASE Infrared, GFN2-xTB):", ", ".join(
        f"{nu:.1f} cm^-1 {a:.2f} km/mol" for nu, a in zip(harmonic_nu, harmonic_int)), flush=True)

    rng = np.random.default_rng(args.seed)
    spectra, drifts = [], []
    for run in range(args.runs):
        positions, velocities = equipartition_state(rng, atoms, omegas, modes, args.temperature, n_vib)
        start = atoms.copy()
        start.positions = positions
        result = run_md(start, calculator(), ensemble="nve", temperature=args.temperature, steps=args.steps,
                        timestep=args.timestep, seed=args.seed + run, initial_velocities=velocities,
                        record_dipoles=True)
        drifts.append(result.info["relative_energy_drift_per_ps"])
        spectra.append(spectrum_from_polarization(result.dipoles, args.timestep, args.temperature, molecules=1,
                                                  window="gaussian", width_cm1=args.width, max_frequency_cm1=5000))
        print(f"  run {run + 1}/{args.runs}: {args.steps} steps, mean T {result.temperature.mean():.1f} K, "
              f"relative energy drift {drifts[-1]:.1e}/ps ({time.perf_counter() - started:.0f} s)", flush=True)
    mean = average_spectra(spectra)

    groups = group_modes(harmonic_nu, harmonic_int, args.merge)
    positions = [g[1] for g in groups]
    edges = [0.5 * (a + b) for a, b in zip(positions[:-1], positions[1:])]
    lows, highs = [max(100.0, positions[0] - 300)] + edges, edges + [positions[-1] + 300]
    strongest = max(g[2] for g in groups)
    band_map = {"+".join(str(k + 7) for k in g[0]): (lo, hi) for g, lo, hi in zip(groups, lows, highs)}
    rows = []
    for (members, position, intensity), summary in zip(groups, mean.band_summary(band_map)):
        rows.append({
            "system": name, "modes": summary["name"], "harmonic_cm1": position,
            "md_centroid_cm1": summary["centroid_cm1"],
            "md_peak_cm1": summary["peak_cm1"], "position_error": summary["centroid_cm1"] / position - 1,
            "harmonic_km_mol": intensity, "md_km_mol": summary["integral"],
            "md_km_mol_stderr": summary["integral_stderr"],
            "intensity_error": summary["integral"] / intensity - 1 if intensity > 0 else float("nan"),
            "checked": intensity >= args.min_fraction * strongest,
            "drift_per_ps": float(np.max(np.abs(drifts))), "seconds": time.perf_counter() - started,
        })
    return rows, mean, (harmonic_nu, harmonic_int)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["H2O", "H2CO"], help="ASE molecule names")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--timestep", type=float, default=0.25, help="fs")
    parser.add_argument("--temperature", type=float, default=20.0, help="K")
    parser.add_argument("--width", type=float, default=20.0, help="Gaussian window line width (FWHM), cm^-1")
    parser.add_argument("--merge", type=float, default=40.0,
                        help="harmonic modes closer than this (cm^-1) are compared as one band")
    parser.add_argument("--min-fraction", type=float, default=0.05,
                        help="bands weaker than this fraction of the strongest are reported but not checked")
    parser.add_argument("--accuracy", type=float, default=0.01,
                        help="tblite accuracy (1.0, tblite's default, leaves SCF noise that drifts a 20 K NVE run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--figure", help="write the comparison plot here (PNG)")
    parser.add_argument("--workdir", help="folder for ASE's displacement cache (default: a temporary one)")
    args = parser.parse_args()
    if args.workdir is None:
        args.workdir = tempfile.mkdtemp(prefix="tblite-ir-")

    started = time.perf_counter()
    results = {name: compare(name, args) for name in args.systems}
    rows = [row for name in args.systems for row in results[name][0]]
    print(f"{'system':6s} {'modes':6s} {'harmonic':>9s} {'MD centroid':>11s} {'MD peak':>8s} {'d(pos)':>7s} "
          f"{'harm km/mol':>11s} {'MD km/mol':>15s} {'d(int)':>8s}  checked")
    for r in rows:
        print(f"{r['system']:6s} {r['modes']:6s} {r['harmonic_cm1']:9.1f} {r['md_centroid_cm1']:11.1f} "
              f"{r['md_peak_cm1']:8.1f} {100 * r['position_error']:+6.2f}% {r['harmonic_km_mol']:11.2f} "
              f"{r['md_km_mol']:8.2f} +- {r['md_km_mol_stderr']:4.2f} {100 * r['intensity_error']:+7.2f}%  "
              f"{'yes' if r['checked'] else 'no (weak)'}")
    checked = [r for r in rows if r["checked"]]
    ok = all(abs(r["position_error"]) < 0.02 and abs(r["intensity_error"]) < 0.10 for r in checked)
    print(json.dumps({"runs": args.runs, "steps": args.steps, "timestep_fs": args.timestep,
                      "temperature_K": args.temperature, "window_fwhm_cm1": args.width, "accuracy": args.accuracy,
                      "max_abs_position_error": max(abs(r["position_error"]) for r in checked),
                      "max_abs_intensity_error": max(abs(r["intensity_error"]) for r in checked),
                      "max_relative_energy_drift_per_ps": max(r["drift_per_ps"] for r in rows),
                      "wall_time_s": round(time.perf_counter() - started, 1), "pass": ok}))
    if args.figure:
        plot(args, results)
        print(f"wrote {args.figure}")
    return 0 if ok else 1


def plot(args, results):
    """One panel per system: MD mean with its +-2 s.e. band, and the harmonic lines broadened by the same window."""
    from matplotlib.figure import Figure

    from aiida_irspec.spectra.plotting import plot_spectrum

    fig = Figure(figsize=(6.4, 2.6 * len(results)), layout="constrained")
    sigma = args.width / (2 * np.sqrt(2 * np.log(2)))
    for ax, (name, (rows, mean, (harmonic_nu, harmonic_int))) in zip(fig.subplots(len(results), 1, squeeze=False)[:, 0],
                                                                      results.items()):
        plot_spectrum(mean, ax=ax, label=f"MD (Green-Kubo), {args.runs} NVE runs at {args.temperature:g} K")
        nu = mean.frequency_cm1
        broadened = sum(a * np.exp(-0.5 * ((nu - n0) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
                        for n0, a in zip(harmonic_nu, harmonic_int))
        ax.plot(nu, broadened, "k:", lw=1.2, label="harmonic (ASE Infrared), same window")
        ax.set_xlim(900, 4000)
        ax.set_title(f"{name}, GFN2-xTB", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
    fig.savefig(args.figure, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main())
