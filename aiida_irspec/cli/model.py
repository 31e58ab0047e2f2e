"""``aiida-irspec fit`` and ``aiida-irspec predict``: polarization models on files, no AiiDA profile.

Exit codes: 0 success; 2 bad input (missing or malformed file, non-neutral charges, unknown species,
incompatible model file, a structure given twice to ``fit``, an option out of its range); 14 the output
cannot be written (checked before any work: folder missing or read-only, a directory, one of the inputs;
or the disk filled while writing; a previous file at that path is kept); 15 the job would need more
memory than the limit (see :mod:`aiida_irspec.resources`); 130 / 143 stopped by SIGINT / SIGTERM.

Documented limits of ``fit`` (checked when the options are parsed): ``--n-radial`` 1-20 (featomic's
radial basis is singular from 24 on), ``--l-max`` 1-16, ``--cutoff`` and ``--transfer-cutoff`` above 0 and
at most 20 Angstrom, ``--gaussian-width`` above 0 and at most 5 Angstrom, ``--n-sparse`` at least 1,
``--transfer-radial``, ``--invariant-radial`` and ``--polynomial-radial`` 1-20, ``--polynomial-degree`` 1-4.
"""

import click

from aiida_irspec.cli.utils import InputFile, Number, format_table, progress_option, user_errors

#: Largest --n-radial and --l-max (see the module docstring) and largest cutoff (Angstrom).
MAX_RADIAL, MAX_L, MAX_CUTOFF = 20, 16, 20.0


def _read_training(paths, labels=None):
    """(frames, born_charges, polarizations) from VASP OUTCAR / vasprun.xml files, or extxyz / ASE files
    whose frames carry ``arrays["born_charges"]`` (N, 9) and/or ``info["polarization"]`` (3,). ``labels``:
    a list that gets one name per frame (the file, and the frame index in a file of several)."""
    import numpy as np

    from aiida_irspec.exceptions import MalformedFileError
    from aiida_irspec.io.vasp import read_born_charges

    frames, charges, polarizations = [], [], []
    for path in paths:
        if path.lower().endswith((".xyz", ".extxyz", ".traj")):
            import ase.io

            try:
                read = ase.io.read(path, index=":")
            except Exception as error:  # ASE raises many kinds of errors for a bad file
                raise MalformedFileError(path, None, "a structure file that ASE can read", str(error)) from error
            for index, atoms in enumerate(read):
                if labels is not None:
                    labels.append(f"{path} (frame {index})" if len(read) > 1 else str(path))
                z = atoms.arrays.get("born_charges")
                p = atoms.info.get("polarization")
                if z is None and p is None:
                    raise MalformedFileError(path, None, "frames with a born_charges array or polarization info")
                frames.append(atoms)
                charges.append(None if z is None else np.asarray(z, dtype=float).reshape(-1, 3, 3))
                polarizations.append(None if p is None else np.asarray(p, dtype=float))
        else:
            record = read_born_charges(path)
            if labels is not None:
                labels.append(str(path))
            frames.append(record.atoms)
            charges.append(record.born_charges)
            polarizations.append(None)
    return frames, charges, polarizations


def _expand_globs(patterns):
    """Paths from file names and (quoted) glob patterns, in order; a pattern matching nothing is an error,
    and so is a match that is not a regular file (a directory, a FIFO, a device)."""
    import glob

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.files import check_input_file

    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(char in pattern for char in "*?[") else [pattern]
        if not matches:
            raise InputError(f"--validation {pattern!r} matches no file")
        paths.extend(check_input_file(path, "--validation file") for path in matches)
    return paths


def _refuse_repeated_files(training, validation):
    """InputError when one file (also through a link) is given twice, as training or validation data."""
    import os

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.model.polarization_model import DUPLICATE_REASON

    seen = {}
    for role, path in [("training", path) for path in training] + [("--validation", path) for path in validation]:
        status = os.stat(path)
        key = (status.st_dev, status.st_ino)
        if key in seen:
            raise InputError(f"{path} ({role}) is the file {seen[key][1]} ({seen[key][0]}) again: {DUPLICATE_REASON}")
        seen[key] = (role, path)


def _read_structures(paths):
    """All frames of every file (ASE formats, VASP OUTCAR/vasprun as their structure), positions as given."""
    import ase.io

    from aiida_irspec.exceptions import MalformedFileError

    frames = []
    for path in paths:
        try:
            frames.extend(ase.io.read(path, index=":"))
        except FileNotFoundError:
            raise
        except Exception as error:  # ASE raises many kinds of errors for a bad file
            raise MalformedFileError(path, None, "a structure file that ASE can read", str(error)) from error
    return frames


def _metrics_rows(name, metrics):
    rows = [(name, f"Z {species}", f"{value:.4f}", "|e|")
            for species, value in metrics.get("born_charges_rmse", {}).items()]
    if "polarization_rmse" in metrics:
        rows.append((name, "P", f"{metrics['polarization_rmse']:.4f}", "|e| A"))
    return rows


@click.command("fit")
@click.argument("training", nargs=-1, required=True, type=InputFile())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--validation", multiple=True, metavar="FILE|'GLOB'",
              help="Validation file; repeat the option, or give a quoted glob such as 'val/OUTCAR*'.")
@click.option("--charges", default=None, help="Baseline charges, e.g. 'Zr=4,O=-2' (default: formal charges for "
              "periodic cells, chosen by cross-validation for molecules).")
@click.option("--kind", type=click.Choice(["dipole", "monopole", "combined", "polynomial", "auto"]), default="combined",
              show_default=True, help="Learned part: atomic dipoles, conserved charges flowing between neighbours, "
              "both, both with the dipoles' features times a polynomial of the centre's densities, or the one "
              "with the lowest cross-validated error (auto, which says which).")
@click.option("--baseline", type=click.Choice(["auto", "formal", "mean", "zero"]), default="auto", show_default=True)
@click.option("--basis", type=click.Choice(["linear", "sparse"]), default="linear", show_default=True)
@click.option("--n-sparse", type=click.IntRange(min=1), default=None,
              help="Reference environments per species (sparse basis).")
@click.option("--regularization", default="auto", show_default=True,
              help="'auto'/'evidence' (Bayesian evidence), 'cv' (cross-validation) or a number.")
@click.option("--cutoff", type=Number(0, MAX_CUTOFF, min_open=True), default=None,
              help=f"Descriptor cutoff in Angstrom, at most {MAX_CUTOFF:g} (default 6.0).")
@click.option("--n-radial", type=click.IntRange(1, MAX_RADIAL), default=None,
              help="Radial basis functions (default 4).")
@click.option("--l-max", type=click.IntRange(1, MAX_L), default=None, help="Largest angular momentum (default 5).")
@click.option("--body-order", type=click.Choice(["2", "3", "4"]), default=None,
              help="2-body, 2+3-body, or also 3-body times the centre's 2-body densities (default 4).")
@click.option("--gaussian-width", type=Number(0, 5, min_open=True), default=None,
              help="Atomic Gaussian width in Angstrom.")
@click.option("--transfer-cutoff", type=Number(0, MAX_CUTOFF, min_open=True), default=None,
              help="Charge-transfer range of the monopole part (A).")
@click.option("--transfer-radial", type=click.IntRange(1, MAX_RADIAL), default=None,
              help="Radial channels of the charge transfer per neighbour species (default 3).")
@click.option("--invariant-radial", type=click.IntRange(1, MAX_RADIAL), default=None,
              help="Radial functions of the invariants behind the monopole part's charges (default 2).")
@click.option("--polynomial-radial", type=click.IntRange(1, MAX_RADIAL), default=None,
              help="Kind polynomial: radial channels of the centre's densities in the polynomial (default 2).")
@click.option("--polynomial-degree", type=click.IntRange(1, 4), default=None,
              help="Kind polynomial: largest degree of the products of densities (default 1).")
@click.option("--polarization-weight", type=Number(min=0), default=10.0, show_default=True,
              help="Row weight of P relative to Z entries.")
@progress_option
@user_errors
def fit(training, output, validation, charges, kind, baseline, basis, n_sparse, regularization, cutoff, n_radial,
        l_max, body_order, gaussian_width, transfer_cutoff, transfer_radial, invariant_radial, polynomial_radial,
        polynomial_degree, polarization_weight, progress):
    """Fit a polarization model to Born charges (VASP OUTCAR/vasprun.xml, or extxyz with born_charges)."""
    import dataclasses
    import math
    import time

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.files import check_output
    from aiida_irspec.model import DescriptorSettings, PolarizationModel
    from aiida_irspec.model.baseline import parse_charges
    from aiida_irspec.model.polarization_model import DUPLICATE_REASON, find_duplicate

    validation = _expand_globs(validation)
    check_output(output, inputs=[*training, *validation], option="--output")
    _refuse_repeated_files(training, validation)
    overrides = {name: value for name, value in dict(cutoff=cutoff, n_radial=n_radial, l_max=l_max,
                                                       body_order=body_order and int(body_order),
                                                       gaussian_width=gaussian_width,
                                                       transfer_cutoff=transfer_cutoff, transfer_radial=transfer_radial,
                                                       invariant_radial=invariant_radial,
                                                       polynomial_radial=polynomial_radial,
                                                       polynomial_degree=polynomial_degree).items()
                 if value is not None}
    descriptor = dataclasses.replace(DescriptorSettings(), **overrides)
    if regularization not in ("auto", "evidence", "cv"):
        try:
            number = float(regularization)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise InputError(f"--regularization must be auto, evidence, cv or a positive number, "
                             f"not {regularization!r}")
        regularization = number
    model = PolarizationModel(descriptor, baseline=parse_charges(charges) if charges else baseline, basis=basis,
                              n_sparse=n_sparse, regularization=regularization, kind=kind)
    labels = []
    frames, born, pol = _read_training(training, labels)
    val = _read_training(validation, labels) if validation else None
    repeated = find_duplicate(frames + (val[0] if val else []))
    if repeated is not None:
        raise InputError(f"{labels[repeated[0]]} and {labels[repeated[1]]} hold the same structure: {DUPLICATE_REASON}")
    start = time.perf_counter()
    model.fit(frames, born, pol, weights={"polarization": polarization_weight}, validation=val, progress=progress)
    seconds = time.perf_counter() - start
    model.save(output)
    metrics = model.metrics
    click.echo(f"Fitted a {metrics['kind']} model on {metrics['n_structures']} structures in {seconds:.1f} s; "
               f"model written to {output}")
    if metrics["kind_selection"]:
        candidates = {}
        for row in metrics["kind_selection"]:
            candidates[row["kind"]] = min(candidates.get(row["kind"], row["cv_rmse"]), row["cv_rmse"])
        ranked = sorted(candidates.items(), key=lambda item: item[1])
        click.echo(f"kind auto: picked {ranked[0][0]}, the lowest {min(model.n_folds, metrics['n_structures'])}-fold "
                   "cross-validated RMSE (" + ", ".join(f"{k} {e:.4f}" for k, e in ranked) + ")")
    settings = ", ".join(f"{k}={v}" for k, v in descriptor.to_dict().items())
    click.echo(f"descriptor: {settings}")
    charges = ", ".join(f"{s}={q:+.4g}" for s, q in metrics["baseline_charges"].items())
    click.echo(f"baseline ({metrics['baseline']}): {charges}")
    for choice in metrics["baseline_selection"]:
        click.echo(f"  candidate baseline {choice['baseline']}: CV RMSE {choice['cv_rmse']:.4f}")
    reg = metrics["regularization"]
    click.echo(f"regularization: {reg['method']}, alpha={reg['alpha']:.4g} (standardised); basis {basis}, "
               f"{metrics['n_parameters']} parameters of {metrics['n_columns']} columns")
    rows = _metrics_rows("training", metrics["training"])
    if metrics.get("cv_rmse") is not None:
        rows.append(("cross-validation", "all rows", f"{metrics['cv_rmse']:.4f}", "|e| (weighted)"))
    if "validation" in metrics:
        rows += _metrics_rows("validation", metrics["validation"])
    click.echo(format_table(rows, ("set", "quantity", "RMSE", "unit")))


@click.command("predict")
@click.argument("model", type=InputFile())
@click.argument("structures", nargs=-1, required=True, type=InputFile())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
@click.option("--born-charges", is_flag=True, help="Also write born_charges (frames, atoms, 3, 3) in |e|.")
@click.option("--uncertainty", is_flag=True, help="Also write born_charges_std (frames,) in |e|.")
@click.option("--partition", is_flag=True, help="Also write charges (frames, atoms) in |e| and atomic_dipoles "
              "(frames, atoms, 3) in |e| A (molecules: P = sum q x + sum mu).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@progress_option
@user_errors
def predict(model, structures, output, born_charges, uncertainty, partition, batch_size, progress):
    """Predict P (|e| A) and optionally Z (|e|) of every frame of STRUCTURES (anything ASE reads), in order."""
    from aiida_irspec.exceptions import InputError, require_finite
    from aiida_irspec.files import check_output, savez
    from aiida_irspec.model import PolarizationModel
    from aiida_irspec.resources import check_memory

    check_output(output, inputs=[model, *structures], option="--output")
    fitted = PolarizationModel.load(model)
    frames = _read_structures(structures)
    n_atoms = sum(len(atoms) for atoms in frames)
    check_memory(8 * (3 * len(frames) + 9 * n_atoms * born_charges + 4 * n_atoms * partition),
                 f"the predicted arrays of {len(frames)} frames", "predict fewer frames at once")
    arrays = {"polarization": fitted.predict_polarization(frames, batch_size=batch_size, progress=progress)}
    if born_charges:
        if len({len(atoms) for atoms in frames}) > 1:
            raise InputError("--born-charges needs structures with the same number of atoms")
        arrays["born_charges"] = fitted.predict_born_charges(frames, progress=progress)
    if uncertainty:
        arrays["born_charges_std"] = fitted.uncertainty(frames, progress=progress)
    if partition:
        arrays["charges"], arrays["atomic_dipoles"] = fitted.predict_partition(frames, progress=progress)
    require_finite(arrays, "the prediction")
    savez(output, **arrays)
    click.echo(f"{len(frames)} frames -> {output} ({', '.join(arrays)})")
