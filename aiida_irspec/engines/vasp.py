"""VASP input building and MD output reading, without AiiDA.

INCAR builders turn a protocol (a plain dict, as loaded from
``aiida_irspec/workflows/protocols/vasp/*.yaml``) plus user overrides into the INCAR tags of a
linear-response (DFPT, ``LEPSILON``) or a machine-learned force-field molecular-dynamics run.
Overrides win; an override value ``None`` removes the tag (aiida-vasp's INCAR writer drops
``None`` values too). Tag names are upper case throughout.

The trajectory reader turns what VASP writes during MD (``vasprun.xml`` or ``XDATCAR``) into
arrays in the package's units (Angstrom, fs, eV, K):

- positions are *unwrapped*: VASP folds every ion back into the cell, so a raw trajectory jumps
  by a lattice vector whenever an ion crosses a face; we undo that by taking the fractional step
  between consecutive frames modulo 1 (minimum image) and summing the steps. This is exact as long
  as no ion moves by more than half a cell between two stored frames.
- velocities come from the positions by central differences (``numpy.gradient``: second order in
  the interior, first order at the two ends). VASP writes velocities only at the end of a run (the
  CONTCAR velocity block), so for every stored frame the finite difference is the only source;
  its error is O((stride * POTIM)^2 * acceleration'), so store every step (``ML_OUTBLOCK = 1``) or a
  small stride when the velocities feed an IR spectrum.
- the kinetic energy comes from VASP where ``vasprun.xml`` has it (``kinetic`` of each step),
  otherwise from the finite-difference velocities; the temperature is ``2 E_kin / (N_dof k_B)``
  with ``N_dof = 3 N - 3`` (VASP's convention: centre-of-mass motion removed).
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import pathlib
import xml.etree.ElementTree as ET
import zlib

import numpy as np

from aiida_irspec import units
from aiida_irspec.exceptions import InputError, MalformedFileError

__all__ = [
    "MDTrajectory",
    "dfpt_incar",
    "md_incar",
    "next_electronic_fix",
    "read_final_velocities",
    "read_md_trajectory",
    "temperature_from_kinetic",
    "unwrap_positions",
    "velocities_from_positions",
]

ENSEMBLES = ("nvt", "nve")
THERMOSTATS = ("nose-hoover", "langevin")
ML_MODES = ("run", "train")


def _upper(tags):
    """A deep copy of an INCAR dict with upper-case tag names (an empty dict for None)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InputError(f"INCAR tags must be a dict, got {type(tags).__name__}")
    return {str(key).upper(): copy.deepcopy(value) for key, value in tags.items()}


def _apply_overrides(tags, overrides):
    """Merge ``overrides`` into ``tags``: a value ``None`` removes the tag."""
    result = dict(tags)
    for key, value in _upper(overrides).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def dfpt_incar(protocol, overrides=None):
    """INCAR tags of a linear-response run for Born charges and the dielectric tensor.

    :param protocol: dict with key ``parameters`` (INCAR tags of the protocol level).
    :param overrides: INCAR tags that replace the protocol's; ``None`` as a value removes a tag.
    :returns: dict of upper-case INCAR tags; ``LEPSILON`` is always ``True``.
    :raises InputError: if the overrides switch ``LEPSILON`` off or ask for ionic steps
        (``NSW > 0`` without ``IBRION`` 7/8 is not a single linear-response run).
    """
    tags = _apply_overrides(_upper(protocol.get("parameters")), overrides)
    if tags.get("LEPSILON", True) is not True:
        raise InputError("a Born-charge run needs LEPSILON = .TRUE.; do not override it")
    tags["LEPSILON"] = True
    if int(tags.get("NSW", 0)) > 0 and int(tags.get("IBRION", -1)) not in (7, 8):
        raise InputError(
            f"NSW = {tags['NSW']} with IBRION = {tags.get('IBRION', -1)} would move the ions; "
            "a Born-charge run is a single linear-response calculation (NSW = 0, or IBRION = 7/8)"
        )
    return tags


def md_incar(protocol, *, ensemble, temperature, steps, timestep, stride=1, seed=None, ml_mode="run",
             thermostat=None, n_species=None, overrides=None):
    """INCAR tags of a VASP machine-learned force-field (or on-the-fly training) MD run.

    :param protocol: dict with ``parameters`` (common INCAR tags), and optionally ``nvt`` / ``nve`` (tags
        per ensemble; ``nvt`` may hold ``thermostat`` and one dict per thermostat) and ``ml`` (tags per
        ML mode: ``run`` / ``train``).
    :param ensemble: ``"nvt"`` or ``"nve"``.
    :param temperature: K; TEBEG = TEEND (NVT target; NVE: initial Maxwell-Boltzmann velocities when
        none are given in POSCAR).
    :param steps: number of MD steps (NSW), > 0.
    :param timestep: fs (POTIM), > 0.
    :param stride: write every ``stride``-th step to vasprun.xml / XDATCAR / OSZICAR (``ML_OUTBLOCK``,
        which VASP honours in ``ML_MODE = run`` only: training runs need ``stride = 1``).
    :param seed: integer seed of VASP's random number generator (``RANDOM_SEED = seed 0 0``), or None.
    :param ml_mode: ``"run"`` (use a given ML_FF) or ``"train"`` (learn on the fly).
    :param thermostat: NVT only: ``"nose-hoover"`` (MDALGO = 2) or ``"langevin"`` (MDALGO = 3,
        LANGEVIN_GAMMA per species); default from the protocol.
    :param n_species: number of species in POSCAR order (needed for the per-species LANGEVIN_GAMMA).
    :param overrides: INCAR tags that replace the built ones; ``None`` as a value removes a tag.
    :returns: dict of upper-case INCAR tags.
    """
    ensemble = str(ensemble).lower()
    if ensemble not in ENSEMBLES:
        raise InputError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if ml_mode not in ML_MODES:
        raise InputError(f"ml_mode must be one of {ML_MODES}, got {ml_mode!r}")
    if not (isinstance(steps, (int, np.integer)) and steps > 0):
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(stride, (int, np.integer)) and stride > 0):
        raise InputError(f"stride must be a positive integer, got {stride!r}")
    if not (np.isfinite(timestep) and timestep > 0):
        raise InputError(f"timestep must be a positive number of fs, got {timestep!r}")
    if not (np.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature must be >= 0 K, got {temperature!r}")

    if ml_mode == "train" and stride != 1:
        raise InputError("on-the-fly training (ML_MODE = train) writes every MD step (ML_OUTBLOCK is for "
                         "ML_MODE = run only): use stride = 1")

    tags = _upper(protocol.get("parameters"))
    tags.update({"IBRION": 0, "NSW": int(steps), "POTIM": float(timestep), "TEBEG": float(temperature),
                 "TEEND": float(temperature), "ML_LMLFF": True, "ML_MODE": ml_mode})
    if ml_mode == "run":
        tags["ML_OUTBLOCK"] = int(stride)
    tags.update(_upper(protocol.get("ml", {}).get(ml_mode)))
    ensemble_protocol = dict(protocol.get(ensemble, {}))
    if ensemble == "nvt":
        thermostat = thermostat or ensemble_protocol.get("thermostat", "nose-hoover")
        if thermostat not in THERMOSTATS:
            raise InputError(f"thermostat must be one of {THERMOSTATS}, got {thermostat!r}")
        thermostat_tags = _upper(ensemble_protocol.get(thermostat))
        if thermostat == "langevin":
            if not n_species:
                raise InputError("a Langevin thermostat needs n_species (LANGEVIN_GAMMA is per species)")
            gamma = thermostat_tags.pop("LANGEVIN_GAMMA")
            tags["LANGEVIN_GAMMA"] = [float(gamma)] * int(n_species)
        tags.update(thermostat_tags)
    else:
        if thermostat is not None:
            raise InputError("a thermostat is only meaningful for ensemble 'nvt'")
        tags.update(_upper(ensemble_protocol))
    if seed is not None:
        tags["RANDOM_SEED"] = [int(seed), 0, 0]
    return _apply_overrides(tags, overrides)


def next_electronic_fix(tags, max_nelm=400):
    """The next change of INCAR tags to try after an electronically unconverged run.

    Order: ALGO Fast/VeryFast -> Normal; then NELM doubled (at least 120, at most ``max_nelm``);
    then ALGO Normal -> All (conjugate gradient). Returns ``(new_tags, description)`` or ``None``
    when nothing is left to try.
    """
    tags = _upper(tags)
    algo = str(tags.get("ALGO", "Normal")).lower()
    if algo in ("fast", "veryfast", "f", "v"):
        tags["ALGO"] = "Normal"
        return tags, f"ALGO = {tags.get('ALGO')} instead of {algo}"
    nelm = int(tags.get("NELM", 60))
    if nelm < max_nelm:
        tags["NELM"] = min(max(2 * nelm, 120), max_nelm)
        return tags, f"NELM = {tags['NELM']} instead of {nelm}"
    if algo in ("normal", "n"):
        tags["ALGO"] = "All"
        return tags, "ALGO = All instead of Normal"
    return None


# --------------------------------------------------------------------------------------------------
# MD trajectories


@dataclasses.dataclass
class MDTrajectory:
    """A VASP MD trajectory in package units.

    times (F,) fs; positions (F, N, 3) Angstrom, unwrapped; cells (F, 3, 3) Angstrom (rows are lattice
    vectors); velocities (F, N, 3) Angstrom/fs (central differences of the positions);
    potential_energy (F,) eV or None; kinetic_energy (F,) eV; temperature (F,) K; symbols (N,);
    masses (N,) amu; steps (F,) MD step numbers (1-based, as VASP counts); source: dict of what was read.
    """

    times: np.ndarray
    positions: np.ndarray
    cells: np.ndarray
    velocities: np.ndarray
    potential_energy: np.ndarray | None
    kinetic_energy: np.ndarray
    temperature: np.ndarray
    symbols: list
    masses: np.ndarray
    steps: np.ndarray
    source: dict


def unwrap_positions(fractional, cells):
    """Cartesian positions without jumps across the cell faces.

    :param fractional: (F, N, 3) fractional coordinates as written by VASP (folded into the cell).
    :param cells: (F, 3, 3) lattice vectors (rows), Angstrom; may change along the run.
    :returns: (F, N, 3) Cartesian Angstrom; frame 0 keeps its folded position, later frames follow
        the minimum-image step between consecutive frames.
    """
    fractional = np.asarray(fractional, dtype=float)
    cells = np.asarray(cells, dtype=float)
    if fractional.ndim != 3 or fractional.shape[2] != 3:
        raise InputError(f"fractional positions must have shape (F, N, 3), got {fractional.shape}")
    if cells.shape != (fractional.shape[0], 3, 3):
        raise InputError(f"cells must have shape ({fractional.shape[0]}, 3, 3), got {cells.shape}")
    steps = np.diff(fractional, axis=0)
    steps -= np.round(steps)
    unwrapped = np.concatenate([fractional[:1], fractional[:1] + np.cumsum(steps, axis=0)], axis=0)
    return np.einsum("fnj,fjk->fnk", unwrapped, cells)


def velocities_from_positions(positions, times):
    """Velocities by central differences of unwrapped positions.

    :param positions: (F, N, 3) unwrapped Cartesian positions, Angstrom; F >= 2.
    :param times: (F,) fs, strictly increasing (need not be uniform).
    :returns: (F, N, 3) Angstrom/fs: second-order central differences inside, first-order one-sided
        differences at the first and last frame.
    """
    positions = np.asarray(positions, dtype=float)
    times = np.asarray(times, dtype=float)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise InputError(f"positions must have shape (F, N, 3), got {positions.shape}")
    if times.shape != (positions.shape[0],):
        raise InputError(f"times must have shape ({positions.shape[0]},), got {times.shape}")
    if positions.shape[0] < 2:
        raise InputError("velocities from positions need at least two frames")
    if np.any(np.diff(times) <= 0):
        raise InputError("times must be strictly increasing")
    return np.gradient(positions, times, axis=0, edge_order=1)


def temperature_from_kinetic(kinetic_energy, n_atoms):
    """Instantaneous temperature (K) from the kinetic energy (eV) with 3N - 3 degrees of freedom."""
    dof = 3 * int(n_atoms) - 3
    if dof <= 0:
        raise InputError("a temperature needs at least two atoms")
    return 2.0 * np.asarray(kinetic_energy, dtype=float) / (dof * units.BOLTZMANN_EV)


def _kinetic_energy(velocities, masses):
    """(F,) eV from (F, N, 3) Angstrom/fs and (N,) amu."""
    return 0.5 * np.einsum("n,fnk,fnk->f", masses, velocities, velocities) * units.AMU_A2_PER_FS2_IN_EV


def _open_text(path):
    path = pathlib.Path(path)
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gzipped else open(path, encoding="utf8", errors="replace")


def _read_vasprun_frames(path):
    """Cells, fractional positions, symbols and per-step energies from a (possibly truncated) vasprun.xml.

    Reads every ``calculation`` block: ``structure/crystal/varray[basis]``, ``structure/varray[positions]``
    and the ``energy`` items (``e_fr_energy``, ``kinetic`` when present). A run cut off mid-step keeps its
    complete steps. Tolerates steps without electronic sub-steps (machine-learned force-field steps).
    """
    cells, positions, potential, kinetic, symbols = [], [], [], [], []
    try:
        with _open_text(path) as handle:
            for _, elem in ET.iterparse(handle, events=("end",)):
                if elem.tag == "atominfo":
                    for rc in elem.findall("array[@name='atoms']/set/rc"):
                        symbols.append(rc.findall("c")[0].text.strip())
                elif elem.tag == "calculation":
                    basis = elem.find("structure/crystal/varray[@name='basis']")
                    frac = elem.find("structure/varray[@name='positions']")
                    energy = elem.find("energy")
                    if basis is None or frac is None or energy is None:
                        elem.clear()
                        continue
                    try:
                        cells.append(_vectors(basis, 3))
                        positions.append(_vectors(frac, len(symbols)))
                        items = {i.get("name"): float(i.text) for i in energy.findall("i")}
                    except (ValueError, TypeError) as error:
                        raise MalformedFileError(path, None, f"numbers in <calculation> step {len(potential) + 1}",
                                                 str(error)) from error
                    potential.append(items.get("e_fr_energy", np.nan))
                    kinetic.append(items.get("kinetic", np.nan))
                    elem.clear()
    except ET.ParseError as error:
        if not cells:
            raise MalformedFileError(path, error.position[0], "a vasprun.xml with complete MD steps",
                                     str(error)) from error
    except (OSError, EOFError, zlib.error) as error:  # a gzip stream that is cut off or damaged
        if not cells:
            raise MalformedFileError(path, None, "a complete gzip stream", str(error)) from error
    if not cells:
        raise MalformedFileError(path, None, "at least one complete <calculation> step")
    return (np.array(cells), np.array(positions), symbols, np.array(potential), np.array(kinetic))


def _vectors(varray, count):
    """(count, 3) floats of the ``<v>`` rows of a vasprun.xml ``varray``; ValueError when they do not fit."""
    rows = [[float(x) for x in (v.text or "").split()] for v in varray]
    if len(rows) != count or any(len(row) != 3 for row in rows):
        raise ValueError(f"{len(rows)} rows of {sorted({len(row) for row in rows})} numbers, expected {count} x 3")
    return rows


def _check_cells(path, cells, fractional=None):
    """MalformedFileError unless every cell (F, 3, 3) has three independent finite vectors and the fractional
    positions (F, N, 3), when given, are finite."""
    finite = np.all(np.isfinite(cells)) and (fractional is None or np.all(np.isfinite(fractional)))
    if not (finite and np.all(np.abs(np.linalg.det(cells)) > 1e-6)):
        raise MalformedFileError(path, None, "finite positions and cells of three independent vectors",
                                 "NaN, infinite or degenerate values")


def _read_xdatcar_frames(path):
    """Cells, fractional positions and symbols of every XDATCAR configuration (ASE's reader)."""
    import io

    from ase.io import read

    try:
        with _open_text(path) as handle:
            text = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # a gzip stream that is cut off or damaged
        raise MalformedFileError(path, None, "a complete gzip stream", str(error)) from error
    try:
        frames = read(io.StringIO(text), index=":", format="vasp-xdatcar")
    except Exception as error:  # noqa: BLE001 - ASE's reader raises many kinds on a malformed file
        raise MalformedFileError(path, None, "an XDATCAR", f"{type(error).__name__}: {error}") from error
    if not frames:
        raise MalformedFileError(path, None, "at least one configuration")
    cells = np.array([f.cell.array for f in frames])
    _check_cells(path, cells)  # before the fractional positions, which need the inverse cells
    fractional = np.array([f.get_scaled_positions(wrap=False) for f in frames])
    return cells, fractional, frames[0].get_chemical_symbols()


def read_md_trajectory(*, timestep, stride=1, vasprun=None, xdatcar=None):
    """An MD trajectory from VASP output, positions unwrapped, velocities from the positions.

    :param timestep: POTIM, fs.
    :param stride: MD steps between stored frames (ML_OUTBLOCK / NBLOCK): frame k is MD step
        ``1 + k * stride`` at time ``k * stride * timestep`` (XDATCAR's ``configuration=`` numbers are not used).
    :param vasprun: path of vasprun.xml (positions, cells and energies of every stored step); preferred.
    :param xdatcar: path of XDATCAR (positions and cells only), used when no vasprun.xml is given.
    :returns: :class:`MDTrajectory`.
    """
    from ase.data import atomic_masses, atomic_numbers

    if not (np.isfinite(timestep) and timestep > 0):
        raise InputError(f"timestep must be a positive number of fs, got {timestep!r}")
    if vasprun is not None:
        cells, fractional, symbols, potential, kinetic_vasp = _read_vasprun_frames(vasprun)
        source = {"path": str(vasprun), "format": "vasprun"}
    elif xdatcar is not None:
        cells, fractional, symbols = _read_xdatcar_frames(xdatcar)
        potential, kinetic_vasp = None, None
        source = {"path": str(xdatcar), "format": "xdatcar"}
    else:
        raise InputError("give vasprun or xdatcar")
    if len(symbols) != fractional.shape[1]:
        raise MalformedFileError(source["path"], None, f"{fractional.shape[1]} atom symbols", len(symbols))
    _check_cells(source["path"], cells, fractional)
    if not (isinstance(stride, (int, np.integer)) and stride > 0):
        raise InputError(f"stride must be a positive integer, got {stride!r}")
    steps = 1 + np.arange(len(cells)) * int(stride)
    times = (steps - 1) * float(timestep)
    positions = unwrap_positions(fractional, cells)
    masses = np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
    if len(times) >= 2:
        velocities = velocities_from_positions(positions, times)
    else:
        velocities = np.full_like(positions, np.nan)
    if kinetic_vasp is not None and np.all(np.isfinite(kinetic_vasp)):
        kinetic = kinetic_vasp
        source["kinetic_energy"] = "vasprun"
    else:
        kinetic = _kinetic_energy(velocities, masses)
        source["kinetic_energy"] = "finite-difference velocities"
    if potential is not None and not np.all(np.isfinite(potential)):
        potential = None
    return MDTrajectory(times=times, positions=positions, cells=cells, velocities=velocities,
                        potential_energy=potential, kinetic_energy=kinetic,
                        temperature=temperature_from_kinetic(kinetic, len(symbols)), symbols=list(symbols),
                        masses=masses, steps=np.asarray(steps), source=source)


def read_final_velocities(contcar):
    """The velocity block of a CONTCAR (written by VASP at the end of MD), Angstrom/fs, or None.

    :returns: (N, 3) Cartesian Angstrom/fs in the file's atom order, or None when the file has no
        velocity block.
    """
    from ase import units as ase_units
    from ase.io import read

    atoms = read(contcar, format="vasp")
    if not atoms.has("momenta"):
        return None
    # ASE multiplied the file's Angstrom/fs by its own Ang/fs factor: divide by the same factor (exact).
    return atoms.get_velocities() / (ase_units.Ang / ase_units.fs)
