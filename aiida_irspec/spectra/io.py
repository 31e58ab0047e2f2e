"""Reading runs (npz with ``pdot`` or ``polarization``) and experimental curves (CSV), with validation."""

import os

import numpy as np

from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, InputError, MalformedFileError, numpy_load
from aiida_irspec.spectra.green_kubo import MIN_SAMPLES

RUN_ARRAYS = ("pdot", "polarization")


def read_run(path: str | os.PathLike, interval: float | None = None, molecules: float | None = None,
             volume: float | None = None) -> tuple[str, np.ndarray]:
    """One run from an npz file: returns (kind, array) with kind "pdot" or "polarization".

    The file holds ``pdot`` (steps, 3) in |e| Angstrom / fs, or ``polarization`` (steps, 3) in |e| Angstrom
    (``pdot`` wins when both are present). Raises MalformedFileError for a file that is not an npz or lacks
    both arrays, InputError for a wrong shape, NaN/inf, or fewer than MIN_SAMPLES samples.

    What else the file stores (as ``aiida-irspec pdot`` writes it) is checked against what the caller
    assumes, InputError when they disagree: ``times`` (steps,) fs must be evenly spaced by ``interval`` fs
    (relative 1e-6); ``numbers`` (N,) must split into ``molecules`` equal molecules (every species' count
    divisible); ``volume`` (A^3, periodic runs) must agree with ``volume`` to 1%.
    """
    try:
        archive = numpy_load(path)
    except DAMAGED_NPZ_ERRORS as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise MalformedFileError(path, None, "an .npz archive (numpy.savez)", type(error).__name__) from error
    if not hasattr(archive, "files"):
        raise MalformedFileError(path, None, "an .npz archive with 'pdot' or 'polarization'", "a single .npy array")
    with archive:
        kind = next((name for name in RUN_ARRAYS if name in archive.files), None)
        if kind is None:
            raise MalformedFileError(path, None, "an array 'pdot' or 'polarization'", ", ".join(archive.files))
        try:
            array = archive[kind]
            stored = {name: archive[name] for name in ("times", "numbers", "volume") if name in archive.files}
        except DAMAGED_NPZ_ERRORS as error:  # damaged archive member
            raise MalformedFileError(path, None, f"a readable array '{kind}'", str(error)) from error
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{path}: '{kind}' must have shape (steps, 3), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: '{kind}' is not numeric ({array.dtype})")
    if array.shape[0] < MIN_SAMPLES + (kind == "polarization"):
        raise InputError(f"{path}: '{kind}' has {array.shape[0]} samples; at least {MIN_SAMPLES} are needed")
    finite = np.all(np.isfinite(array), axis=1)
    if not finite.all():
        raise InputError(f"{path}: '{kind}' holds NaN or infinite values (first at step {int(np.argmin(finite))})")
    _check_stored(path, stored, len(array), interval, molecules, volume)
    return kind, np.asarray(array, dtype=float)


def _check_stored(path, stored, steps, interval, molecules, volume):
    """InputError when a run's stored times, atoms or volume contradict the caller's interval (fs), number
    of molecules or volume (A^3); see :func:`read_run`."""
    times = stored.get("times")
    if times is not None and interval is not None:
        times = np.asarray(times, dtype=float)
        if times.shape != (steps,) or not np.all(np.isfinite(times)):
            raise InputError(f"{path}: 'times' must be {steps} finite numbers (fs), one per sample; got shape "
                             f"{times.shape}")
        spacing = np.diff(times)
        if not np.allclose(spacing, interval, rtol=1e-6, atol=0):
            if np.allclose(spacing, spacing[0], rtol=1e-6, atol=0):
                raise InputError(f"{path}: its samples are {spacing[0]:g} fs apart (stored 'times'), but --dt x "
                                 f"--stride gives {interval:g} fs: the spectrum would be on a wrong frequency axis")
            raise InputError(f"{path}: its stored 'times' are not evenly spaced ({spacing.min():g} to "
                             f"{spacing.max():g} fs apart): runs cannot be joined or resampled here")
    numbers = stored.get("numbers")
    if numbers is not None and molecules is not None and int(molecules) == molecules and molecules > 0:
        species, counts = np.unique(np.asarray(numbers).ravel(), return_counts=True)
        if np.any(counts % int(molecules)):
            from ase.data import chemical_symbols

            formula = "".join(f"{chemical_symbols[z]}{n}" for z, n in zip(species, counts))
            raise InputError(f"{path}: its atoms ({formula}) do not split into {molecules} equal molecules "
                             "(--molecules)")
    stored_volume = stored.get("volume")
    if stored_volume is not None and volume is not None and float(stored_volume) > 0 and np.isfinite(volume):
        if abs(volume - float(stored_volume)) > 0.01 * float(stored_volume):
            raise InputError(f"{path}: its cell volume is {float(stored_volume):.6g} A^3, but --volume is {volume:g}")


def read_experiment_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """An experimental curve: two numeric columns (wavenumber in cm^-1, intensity in any unit).

    Lines starting with '#' and a first non-numeric (header) line are skipped; comma, semicolon, tab or
    blank separated. Returns (frequency_cm1 (K,), intensity (K,)), sorted by frequency.
    """
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:  # a stray byte fails as a non-number
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.replace(",", " ").replace(";", " ").split()
            try:
                values = [float(x) for x in fields[:2]]
            except ValueError:
                if rows:
                    raise MalformedFileError(path, number, "two numbers (cm^-1, intensity)", text) from None
                continue  # a header line
            if len(values) < 2 or not np.all(np.isfinite(values)):
                raise MalformedFileError(path, number, "two finite numbers (cm^-1, intensity)", text)
            rows.append(values)
    if len(rows) < 2:
        raise MalformedFileError(path, None, "at least two data lines (cm^-1, intensity)", f"{len(rows)} lines")
    data = np.array(rows)
    data = data[np.argsort(data[:, 0])]
    return data[:, 0], data[:, 1]


def read_spectrum_csv(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read back a CSV written by AveragedSpectrum.to_csv: (columns name -> (M,) array, comment lines)."""
    comments, header, body = [], None, []
    with open(path) as handle:
        for line in handle:
            if line.startswith("#"):
                comments.append(line[1:].strip())
            elif header is None:
                header = line.strip().split(",")
            elif line.strip():
                body.append(line)
    if header is None or not body:
        raise MalformedFileError(path, None, "a header line and data rows")
    data = np.loadtxt(body, delimiter=",", ndmin=2)
    return {name: data[:, k] for k, name in enumerate(header)}, comments
