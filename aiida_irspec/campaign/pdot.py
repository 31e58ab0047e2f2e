"""dP/dt (or P) of a polarization model along a stored trajectory: what ``aiida-irspec pdot`` runs.

No AiiDA. A trajectory file is either

* an ``.npz`` with ``times`` (F,) fs, ``positions`` (F, N, 3) Angstrom (unwrapped), ``cells`` (F, 3, 3)
  Angstrom, ``numbers`` (N,), optional ``pbc`` (3,) and optional ``velocities`` (F, N, 3) Angstrom/fs (the
  tblite MD output and what the prediction CalcJob writes from a TrajectoryData), or
* any trajectory ASE reads (vasprun.xml, XDATCAR, extxyz, ...) with the time between frames given.

Periodic positions are unwrapped here (frame-to-frame minimum image: an atom that jumps across the cell
is moved back by whole lattice vectors) because the model's baseline charges need continuous positions.
Shapes, finite values and increasing times of an npz are checked (:class:`MalformedFileError`).

An npz is read in chunks of :data:`CHUNK_FRAMES` frames (:class:`NpzTrajectory`) and its frames flow through
the model one batch at a time, so the memory of a prediction does not grow with the length of the trajectory.

Two routes: ``"velocity"`` gives dP/dt = sum_i Z_i v_i from the velocities (``predict_pdot``: two expansions
per frame); ``"polarization"`` gives P (F, 3) at every frame (one expansion per frame), from which the
spectrum takes dP/dt by finite differences (:func:`aiida_irspec.spectra.green_kubo.spectrum_from_polarization`;
it loses ``1 - sinc^2(omega dt / 2)`` of the spectrum at frequency omega for frames dt apart). ``"auto"``
(:func:`choose_route`) takes the polarization route when the frames are at most
:data:`POLARIZATION_MAX_INTERVAL` apart or carry no velocities, else the velocity route.
"""

import itertools
import pathlib

import numpy as np

from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, InputError, MalformedFileError, open_npz
from aiida_irspec.io.vasp import unwrap_positions as unwrap

ROUTES = ("auto", "velocity", "polarization")
REQUIRED_NPZ = ("times", "positions", "cells", "numbers")
#: Per-frame arrays of an npz trajectory, read in chunks of frames.
PER_FRAME_NPZ = ("positions", "cells", "velocities")
#: Frames read, unwrapped and turned into structures at a time.
CHUNK_FRAMES = 256
#: Largest time between frames (fs) at which ``route="auto"`` predicts P (one expansion per frame) instead of
#: dP/dt from the velocities (two): the forward difference of P then keeps ``sinc^2(omega dt / 2)`` of the
#: spectrum, at 4000 cm^-1 95.4 % for 1 fs and 98.8 % for 0.5 fs (frames of the usual 0.25-0.5 fs water steps,
#: stored every step or every second step).
POLARIZATION_MAX_INTERVAL = 1.0


def read_trajectory(path, timestep=None):
    """The trajectory in ``path`` as a dict of arrays: times, positions (unwrapped), cells, numbers, pbc,
    velocities (or None). ``timestep``: fs between frames, needed (and only used) for non-npz files."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"trajectory file not found: {path}")
    if path.suffix == ".npz":
        with NpzTrajectory(path) as trajectory:
            return trajectory.read()
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


class NpzTrajectory:
    """An npz trajectory (see the module docstring) whose per-frame arrays are read a chunk of frames at a time.

    Attributes: ``path``, ``times`` (F,) fs, ``numbers`` (N,), ``pbc`` (3,) and ``has_velocities``. The
    shapes of all arrays are checked from their headers when the file is opened, the values of each chunk
    when it is read (finite numbers; MalformedFileError otherwise). Use it as a context manager.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._archive = None
        try:
            self._archive = open_npz(self.path)
            headers = {name: _npy_header(self._archive, name) for name in self._archive.files}
            missing = [name for name in REQUIRED_NPZ if name not in headers]
            if missing:
                self._malformed(f"arrays {', '.join(REQUIRED_NPZ)}", f"missing {', '.join(missing)}")
            small = {name: self._archive[name] for name in ("times", "numbers", "pbc") if name in headers}
        except MalformedFileError:
            raise
        except DAMAGED_NPZ_ERRORS as error:
            self.close()
            raise MalformedFileError(self.path, None, "an npz trajectory", str(error)) from None
        self._headers = headers
        times, numbers = small["times"], small["numbers"]
        n_frames, n_atoms = (len(times) if times.ndim == 1 else -1), (len(numbers) if numbers.ndim == 1 else -1)
        if n_frames <= 0 or n_atoms <= 0:
            self._malformed("at least one frame of at least one atom", f"times {times.shape}, numbers {numbers.shape}")
        expected = {"times": (n_frames,), "positions": (n_frames, n_atoms, 3), "cells": (n_frames, 3, 3),
                    "numbers": (n_atoms,), "velocities": (n_frames, n_atoms, 3), "pbc": (3,)}
        for name, shape in expected.items():
            if name in headers and headers[name][0] != shape:
                self._malformed(f"'{name}' of shape {shape} (from times and numbers)", f"shape {headers[name][0]}")
            if name in headers and name != "pbc" and not _real_numbers(headers[name][2]):
                self._malformed(f"finite numbers in '{name}'", "NaN, infinite or non-numeric values")
        for name in ("times", "numbers"):
            self._check_finite(name, small[name])
        if n_frames > 1 and not np.all(np.diff(times) > 0):
            self._malformed("increasing 'times'", "times that do not increase")
        self.times, self.numbers = times.astype(float), numbers
        self.has_velocities = "velocities" in headers
        if "pbc" in small:
            self.pbc = np.asarray(small["pbc"], dtype=bool)
        else:
            self.pbc = np.linalg.norm(next(self._read_rows("cells", 1))[0], axis=1) > 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    def _malformed(self, expected, found):
        self.close()
        raise MalformedFileError(self.path, None, expected, found)

    def _check_finite(self, name, values):
        if not (_real_numbers(values.dtype) and np.all(np.isfinite(values))):
            self._malformed(f"finite numbers in '{name}'", "NaN, infinite or non-numeric values")

    def _read_rows(self, name, size):
        """Yield ``name`` in blocks of up to ``size`` frames (float arrays), read from the archive's stream."""
        shape, fortran, dtype = self._headers[name]
        if fortran:  # not row-contiguous in the file: read whole (numpy writes C order)
            values = self._archive[name]
            yield from (values[lo:lo + size] for lo in range(0, len(values), size))
            return
        row = int(np.prod(shape[1:], dtype=int)) * dtype.itemsize
        with self._archive.zip.open(_member(self._archive, name)) as handle:
            _npy_header_of(handle)
            for lo in range(0, shape[0], size):
                rows = min(size, shape[0] - lo)
                data = handle.read(rows * row)
                if len(data) != rows * row:
                    raise ValueError(f"'{name}' ends after {lo + len(data) // max(row, 1)} of {shape[0]} frames")
                yield np.frombuffer(data, dtype=dtype).reshape((rows,) + shape[1:])

    def chunks(self, size=CHUNK_FRAMES):
        """Yield dicts of ``positions`` (f, N, 3) Angstrom (unwrapped across chunks for periodic cells),
        ``cells`` (f, 3, 3) Angstrom and ``velocities`` (f, N, 3) Angstrom/fs or None, f <= ``size``."""
        names = [name for name in PER_FRAME_NPZ if name in self._headers]
        previous = None  # the last unwrapped frame (positions, cell) of the previous chunk
        try:
            for blocks in zip(*(self._read_rows(name, size) for name in names)):
                chunk = dict(zip(names, (np.asarray(block, dtype=float) for block in blocks)))
                for name, values in chunk.items():
                    self._check_finite(name, values)
                if self.pbc.any():
                    positions, cells = chunk["positions"], chunk["cells"]
                    if previous is not None:
                        positions = unwrap(np.concatenate([previous[0][None], positions]),
                                           np.concatenate([previous[1][None], cells]))[1:]
                    else:
                        positions = unwrap(positions, cells)
                    chunk["positions"] = positions
                    previous = (positions[-1], cells[-1])
                chunk.setdefault("velocities", None)
                yield chunk
        except DAMAGED_NPZ_ERRORS as error:
            if isinstance(error, MalformedFileError):
                raise
            self.close()
            raise MalformedFileError(self.path, None, "an npz trajectory", str(error)) from None

    def read(self):
        """The whole trajectory as the dict of :func:`read_trajectory`."""
        chunks = list(self.chunks())
        return {"times": self.times, "numbers": self.numbers, "pbc": self.pbc,
                **{name: np.concatenate([chunk[name] for chunk in chunks]) for name in ("positions", "cells")},
                "velocities": np.concatenate([chunk["velocities"] for chunk in chunks]) if self.has_velocities
                else None}


class ArrayTrajectory:
    """A trajectory dict (of :func:`read_trajectory`) behind the interface of :class:`NpzTrajectory`."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.times, self.numbers, self.pbc = arrays["times"], arrays["numbers"], np.asarray(arrays["pbc"], dtype=bool)
        self.has_velocities = arrays.get("velocities") is not None

    def chunks(self, size=CHUNK_FRAMES):
        for lo in range(0, len(self.times), size):
            yield {"positions": self.arrays["positions"][lo:lo + size], "cells": self.arrays["cells"][lo:lo + size],
                   "velocities": self.arrays["velocities"][lo:lo + size] if self.has_velocities else None}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def open_trajectory(path, timestep=None):
    """The trajectory in ``path`` for streaming: an :class:`NpzTrajectory` for an npz, else the whole file read
    by :func:`read_trajectory` (``timestep`` fs between frames) as an :class:`ArrayTrajectory`."""
    path = pathlib.Path(path)
    if path.suffix == ".npz" and path.is_file():
        return NpzTrajectory(path)
    return ArrayTrajectory(read_trajectory(path, timestep))


def _real_numbers(dtype):
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def _member(archive, name):
    """The zip member of array ``name`` of an open npz (numpy names them ``name.npy``)."""
    return f"{name}.npy" if f"{name}.npy" in archive.zip.namelist() else name


def _npy_header(archive, name):
    """(shape, fortran order, dtype) of the member ``name`` of an open npz, from its header only."""
    with archive.zip.open(_member(archive, name)) as handle:
        return _npy_header_of(handle)


def _npy_header_of(handle):
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    raise ValueError(f"npy format version {version} is not supported")


def trajectory_atoms(trajectory):
    """The frames of a trajectory dict (see :func:`read_trajectory`; or one chunk of it with ``numbers`` and
    ``pbc``) as a list of ``ase.Atoms``."""
    import ase

    return [ase.Atoms(numbers=trajectory["numbers"], positions=positions, cell=cell, pbc=trajectory["pbc"])
            for positions, cell in zip(trajectory["positions"], trajectory["cells"])]


def choose_route(times, has_velocities, route="auto"):
    """The route ("velocity" or "polarization") of a prediction along frames at ``times`` (F,) fs.

    "auto": the polarization route (P only, one expansion per frame) when the frames are at most
    :data:`POLARIZATION_MAX_INTERVAL` fs apart or carry no velocities; else (sparse frames, or a single one)
    the velocity route. A route asked for by name is checked: the velocity route needs velocities.
    """
    if route not in ROUTES:
        raise InputError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    if route == "velocity" and not has_velocities:
        raise InputError("the trajectory has no velocities: use the polarization route")
    if route != "auto":
        return route
    interval = float(np.max(np.diff(times))) if len(times) > 1 else np.inf
    return "polarization" if not has_velocities or interval <= POLARIZATION_MAX_INTERVAL + 1e-9 else "velocity"


def predict_along(model, trajectory, route="auto", batch_size=None, chunk_frames=CHUNK_FRAMES):
    """Predict along a trajectory: a dict of :func:`read_trajectory` or an :class:`NpzTrajectory` /
    :class:`ArrayTrajectory` (:func:`open_trajectory`), streamed through the model ``chunk_frames`` frames at a
    time (structures are made a chunk at a time, so memory does not grow with the trajectory's length).

    route: "auto" (default, :func:`choose_route`), "velocity" or "polarization". Returns arrays ``times`` (F,)
    fs, ``pdot`` (F, 3) |e| A/fs (velocity route) or ``polarization`` (F, 3) |e| A (polarization route),
    ``route`` (the route taken, a 0-d string array), ``numbers`` (N,) and, for periodic cells, ``volume`` (the
    mean cell volume, A^3).
    """
    if isinstance(trajectory, dict):
        trajectory = ArrayTrajectory(trajectory)
    route = choose_route(trajectory.times, trajectory.has_velocities, route)
    periodic = bool(np.all(trajectory.pbc))
    volume = [0.0]

    def frames():
        for chunk in trajectory.chunks(chunk_frames):
            if periodic:
                volume[0] += float(np.sum(np.abs(np.linalg.det(chunk["cells"]))))
            velocities = chunk["velocities"] if route == "velocity" else itertools.repeat(None)
            yield from zip(trajectory_atoms({**chunk, "numbers": trajectory.numbers, "pbc": trajectory.pbc}),
                           velocities)

    kwargs = {} if batch_size is None else {"batch_size": int(batch_size)}
    if route == "velocity":
        series = model.iter_pdot(frames(), **kwargs)
    else:
        series = model.iter_polarization((atoms for atoms, _ in frames()), **kwargs)
    out = np.zeros((len(trajectory.times), 3))
    for k, value in enumerate(series):
        out[k] = value
    arrays = {"times": np.asarray(trajectory.times, dtype=float),
              "pdot" if route == "velocity" else "polarization": out, "route": np.array(route),
              "numbers": np.asarray(trajectory.numbers)}
    if periodic:
        arrays["volume"] = np.array(volume[0] / len(trajectory.times))
    return arrays
