"""Protocols (``fast``, ``moderate``, ``precise``) of the plugin's processes, as YAML files in this folder.

One file per process, ``<tag>.yaml`` (``campaign.yaml``, ``tblite/md.yaml``, ``vasp/born_charges.yaml``, ...),
in the format of aiida-vasp and aiida-quantumespresso: ``default_protocol``, ``default_inputs`` and
``protocols`` (level -> a ``description`` and the entries merged over the defaults). A process class gets
``get_available_protocols()``, ``get_default_protocol()`` and ``get_protocol_inputs(protocol, overrides)`` from
:class:`ProtocolMixin`, which is aiida-vasp's helper reading this folder. As there, ``level@NAME`` takes the
level from a file of the user's own, ``~/.aiida-irspec/protocols/<tag>/NAME.yaml``.

``overrides`` (a dict, or the path of a YAML file) mirror the nesting of the process's input ports and are
merged over the protocol's inputs key by key.
"""

import collections.abc
import os
import pathlib

from aiida_vasp.protocols import ProtocolMixin as _AiidaVaspProtocolMixin

from aiida_irspec.exceptions import InputError

PROTOCOL_DIR = pathlib.Path(__file__).resolve().parent
LEVELS = ("fast", "moderate", "precise")


def read_yaml(path):
    """The mapping in the YAML file ``path`` (duplicate keys and aliases refused by the package's loader)."""
    from aiida_irspec.files import load_yaml

    return load_yaml(path)


def overrides_mapping(overrides):
    """``overrides`` of a ``get_builder_from_protocol`` as a dict: None -> {}, a path -> the YAML file's mapping."""
    if overrides is None:
        return {}
    if isinstance(overrides, (str, os.PathLike)):
        overrides = read_yaml(overrides)
    if not isinstance(overrides, collections.abc.Mapping):
        raise InputError(f"overrides must be a mapping (or the path of a YAML file of one), got "
                         f"{type(overrides).__name__}")
    return dict(overrides)


class ProtocolMixin(_AiidaVaspProtocolMixin):
    """Protocols of a process class from ``aiida_irspec/workflows/protocols/<_protocol_tag>.yaml``.

    Subclasses set ``_protocol_tag`` (e.g. ``"tblite/md"``).
    """

    _protocol_tag = "NULL"
    _load_root = "~/.aiida-irspec/protocols"

    @classmethod
    def get_protocol_filepath(cls, file_alias=None):
        """The YAML file of the protocols: the package's, a user's file ``level@NAME``, or a path to a file."""
        if cls._protocol_tag == "NULL":
            raise TypeError(f"{cls.__name__} has no protocol tag")
        if file_alias is not None:
            alias = str(file_alias)
            if alias.endswith((".yaml", ".yml")) and pathlib.Path(alias).is_file():
                return pathlib.Path(alias).absolute()
            user = pathlib.Path(f"{cls._load_root}/{cls._protocol_tag}/{alias}.yaml").expanduser()
            if user.is_file():
                return user
            raise InputError(f"no protocol file {alias!r} for {cls._protocol_tag} (looked for {user})")
        return PROTOCOL_DIR / f"{cls._protocol_tag}.yaml"

    @classmethod
    def _load_protocol_file(cls, file_alias=None):
        return read_yaml(cls.get_protocol_filepath(file_alias))

    @classmethod
    def get_protocol_inputs(cls, protocol=None, overrides=None):
        """The inputs of ``protocol`` (default: the file's default level) with ``overrides`` (a dict, or a path
        to a YAML file of one) merged over them.

        :raises InputError: for an unknown protocol level.
        """
        overrides = overrides_mapping(overrides)
        if protocol is not None:
            level, alias = cls._split_protocol_file_name(protocol)
            available = cls.get_available_protocols(alias)
            if level not in available:
                raise InputError(f"unknown protocol {level!r} for {cls.__name__}: choose from "
                                 f"{', '.join(available)}")
        return super().get_protocol_inputs(protocol, overrides or None)


def recursive_merge(left, right):
    """A new dict: ``left`` updated by ``right``, nested dicts merged key by key."""
    merged = dict(left)
    for key, value in (right or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_protocol(engine, job, protocol=None):
    """The merged inputs of one level of ``<engine>/<job>.yaml`` (``description`` included), for the engine
    implementations that are not process classes of their own.

    :raises InputError: for an unknown engine, job or level.
    """
    path = PROTOCOL_DIR / engine / f"{job}.yaml"
    if not path.is_file():
        raise InputError(f"no protocols for engine {engine!r} and job {job!r} ({path} is missing)")
    data = read_yaml(path)
    protocol = protocol or data["default_protocol"]
    if protocol not in data["protocols"]:
        raise InputError(f"unknown protocol {protocol!r} for {engine} {job}: choose from {sorted(data['protocols'])}")
    return recursive_merge(data["default_inputs"], data["protocols"][protocol])

