"""VASP input building, without AiiDA.

INCAR builders turn a protocol (a plain dict, as loaded from
``aiida_irspec/workflows/protocols/vasp/*.yaml``) plus user overrides into the INCAR tags of a
linear-response (DFPT, ``LEPSILON``) or a machine-learned force-field molecular-dynamics run.
Overrides win; an override value ``None`` removes the tag (aiida-vasp's INCAR writer drops
``None`` values too). Tag names are upper case throughout. What VASP writes is read by
:mod:`aiida_irspec.io.vasp`.
"""

from __future__ import annotations

import copy

import numpy as np

from aiida_irspec.exceptions import InputError

__all__ = ["dfpt_incar", "md_incar", "next_electronic_fix"]

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
