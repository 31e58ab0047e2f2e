"""Protocols (``fast``, ``moderate``, ``precise``) of the engine implementations, as YAML per engine and job.

A file ``<engine>/<job>.yaml`` holds ``default_protocol``, ``default_inputs`` and ``protocols``
(level -> entries merged over the defaults, plus a ``description``).
"""

import pathlib

import yaml

from aiida_irspec.exceptions import InputError

PROTOCOL_DIR = pathlib.Path(__file__).resolve().parent
LEVELS = ("fast", "moderate", "precise")


def load_protocol(engine, job, protocol=None):
    """The merged inputs of one protocol level of ``<engine>/<job>.yaml`` (``description`` included).

    :param protocol: a level name, or None for the file's default.
    :raises InputError: for an unknown engine, job or level.
    """
    path = PROTOCOL_DIR / engine / f"{job}.yaml"
    if not path.is_file():
        raise InputError(f"no protocols for engine {engine!r} and job {job!r} ({path} is missing)")
    with open(path, encoding="utf8") as handle:
        data = yaml.safe_load(handle)
    protocol = protocol or data["default_protocol"]
    if protocol not in data["protocols"]:
        raise InputError(f"unknown protocol {protocol!r} for {engine} {job}: choose from {sorted(data['protocols'])}")
    return recursive_merge(data["default_inputs"], data["protocols"][protocol])


def recursive_merge(left, right):
    """A new dict: ``left`` updated by ``right``, nested dicts merged key by key."""
    merged = dict(left)
    for key, value in (right or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
