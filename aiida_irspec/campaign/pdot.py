"""dP/dt (or P) of a polarization model along a stored trajectory: what ``aiida-irspec pdot`` runs.

No AiiDA. A trajectory file is either

* an ``.npz`` with ``times`` (F,) fs, ``positions`` (F, N, 3) Angstrom (unwrapped), ``cells`` (F, 3, 3)
  Angstrom, ``numbers`` (N,), optional ``pbc`` (3,) and optional ``velocities`` (F, N, 3) Angstrom/fs (the
  tblite MD output and what the prediction CalcJob writes from a TrajectoryData), or
* any trajectory ASE reads (vasprun.xml, XDATCAR, extxyz, ...) with the time between frames given.

Periodic positions are unwrapped here (frame-to-frame minimum image: an atom that jumps across the cell
is moved back by whole lattice vectors) because the model's baseline charges need continuous positions.
Shapes, finite values and increasing times of an npz are checked (:class:`MalformedFileError`).

Two routes: ``"velocity"`` gives dP/dt = sum_i Z_i v_i from the velocities (``predict_pdot``);
``"polarization"`` gives P (F, 3) at every frame, from which the spectrum takes dP/dt by finite
differences (:func:`aiida_irspec.spectra.green_kubo.spectrum_from_polarization`).
"""

import pathlib

import numpy as np

from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, InputError, MalformedFileError, open_npz
from aiida_irspec.io.vasp import unwrap_positions as unwrap

ROUTES = ("velocity", "polarization")
REQUIRED_NPZ = ("times", "positions", "cells", "numbers")


def read_trajectory(path, timestep=None):
    """The trajectory in ``path`` as a dict of arrays: times, positions (unwrapped), cells, numbers, pbc,
    velocities (or None). ``timestep``: fs between frames, needed (and only used) for non-npz files."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"trajectory file not found: {path}")
    if path.suffix == ".npz":
        try:
            with open_npz(path) as data:
                arrays = {name: data[name] for name in data.files}
        except DAMAGED_NPZ_ERRORS as error:
            raise MalformedFileError(path, None, "an npz trajectory", str(error)) from None
        missing = [name for name in REQUIRED_NPZ if name not in arrays]
        if missing:
            raise MalformedFileError(path, None, f"arrays {', '.join(REQUIRED_NPZ)}", f"missing {', '.join(missing)}")
        _check_npz_arrays(path, arrays)
        pbc = np.asarray(arrays.get("pbc", np.linalg.norm(arrays["cells"][0], axis=1) > 0), dtype=bool)
        positions = unwrap(arrays["positions"], arrays["cells"]) if pbc.any() else arrays["positions"]
        return {"times": arrays["times"], "positions": positions, "cells": arrays["cells"],
                "numbers": arrays["numbers"], "pbc": pbc, "velocities": arrays.get("velocities")}
    from aiida_irspec.io import vasp

    with vasp.open_vasp_file(path) as handle:
        head = handle.read(4096)
    if vasp.detect_format(head):  # every stored step of a vasprun.xml, OUTCAR or XDATCAR, times from the file
        trajectory = vasp.read_trajectory(path, timestep)
        if trajectory.times is None:
            raise InputError(f"{path}: the file states no time step: give the time between frames (fs)")
        problem = trajectory.spacing_problem()
        if problem:
            raise InputError(f"a spectrum needs an evenly sampled trajectory: {problem}")
        return {"times": trajectory.times, "positions": trajectory.positions, "cells": trajectory.cells,
                "numbers": trajectory.numbers, "pbc": np.ones(3, dtype=bool), "velocities": None}
    if timestep is None or not 0 < timestep < np.inf:
        raise InputError(f"{path}: give the time between frames (fs) for a trajectory that is not an npz file")
    import ase.io

    try:
        frames = ase.io.read(path, index=":")
    except Exception as error:  # ASE raises many kinds for unreadable files
        raise MalformedFileError(path, None, "a trajectory ASE can read", str(error)) from None
    if any(len(atoms) != len(frames[0]) or np.any(atoms.numbers != frames[0].numbers) for atoms in frames):
        raise MalformedFileError(path, None, "the same atoms in every frame", "frames with different atoms")
    cells = np.array([atoms.cell.array for atoms in frames])
    return {"times": np.arange(len(frames)) * float(timestep),
            "positions": unwrap([atoms.positions for atoms in frames], cells), "cells": cells,
            "numbers": frames[0].numbers, "pbc": frames[0].pbc, "velocities": None}


def _check_npz_arrays(path, arrays):
    """MalformedFileError unless the npz arrays have matching shapes ((F,), (F, N, 3), (F, 3, 3), (N,), F >= 1)
    and finite values."""
    numbers, positions = arrays["numbers"], arrays["positions"]
    n_frames, n_atoms = len(arrays["times"]), len(numbers) if numbers.ndim == 1 else -1
    expected = {"times": (n_frames,), "positions": (n_frames, n_atoms, 3), "cells": (n_frames, 3, 3),
                "numbers": (n_atoms,), "velocities": (n_frames, n_atoms, 3), "pbc": (3,)}
    if n_frames == 0 or n_atoms <= 0:
        raise MalformedFileError(path, None, "at least one frame of at least one atom",
                                 f"times {arrays['times'].shape}, numbers {numbers.shape}")
    for name, shape in expected.items():
        if name in arrays and arrays[name].shape != shape:
            raise MalformedFileError(path, None, f"'{name}' of shape {shape} (from times and numbers)",
                                     f"shape {arrays[name].shape}")
        if name in arrays and name != "pbc" and not (np.issubdtype(arrays[name].dtype, np.number)
                                                       and np.all(np.isfinite(arrays[name]))):
            raise MalformedFileError(path, None, f"finite numbers in '{name}'", "NaN, infinite or non-numeric values")
    if positions.shape[0] > 1 and not np.all(np.diff(arrays["times"]) > 0):
        raise MalformedFileError(path, None, "increasing 'times'", "times that do not increase")


def trajectory_atoms(trajectory):
    """The frames of a trajectory dict (see :func:`read_trajectory`) as a list of ``ase.Atoms``."""
    import ase

    return [ase.Atoms(numbers=trajectory["numbers"], positions=positions, cell=cell, pbc=trajectory["pbc"])
            for positions, cell in zip(trajectory["positions"], trajectory["cells"])]


def predict_along(model, trajectory, route="velocity", batch_size=None):
    """Predict along a trajectory dict; returns arrays ``times`` (F,) fs and ``pdot`` (F, 3) |e| A/fs
    (velocity route) or ``polarization`` (F, 3) |e| A (polarization route)."""
    if route not in ROUTES:
        raise InputError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    frames = trajectory_atoms(trajectory)
    kwargs = {} if batch_size is None else {"batch_size": int(batch_size)}
    if route == "velocity":
        if trajectory["velocities"] is None:
            raise InputError("the trajectory has no velocities: use the polarization route")
        pdot = model.predict_pdot(frames, trajectory["velocities"], **kwargs)
        return {"times": trajectory["times"], "pdot": np.asarray(pdot, dtype=float)}
    polarization = model.predict_polarization(frames, **kwargs)
    return {"times": trajectory["times"], "polarization": np.asarray(polarization, dtype=float)}
