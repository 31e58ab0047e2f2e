"""Settings groups: dataclasses whose fields state their default, allowed values and meaning exactly once.

A group (:class:`~aiida_irspec.model.descriptors.DescriptorSettings`,
:class:`~aiida_irspec.model.settings.ModelSettings`, :class:`~aiida_irspec.campaign.settings.SelectionSettings`,
:class:`~aiida_irspec.campaign.settings.RunSettings`, :class:`~aiida_irspec.spectra.settings.SpectrumSettings`,
:class:`~aiida_irspec.campaign.settings.FailureSettings`) derives from :class:`Settings` and makes its fields with
:func:`setting`. The library, the command line, the WorkChains' port validators and the campaign YAML all read
the defaults and the limits from there:

* ``Group.problems(values, path)`` lists what is wrong with a mapping of values (unknown keys with a "did you
  mean", wrong types, values out of range), each prefixed with its dotted key;
* ``Group.from_dict(values, path)`` builds the group with the defaults filled in, or raises
  :class:`~aiida_irspec.exceptions.InputError` listing every problem;
* ``Group.port_validator(path)`` is the same check as an AiiDA ``Dict`` port validator;
* ``Group.reference_rows()`` gives the table of the docs.

No AiiDA import.
"""

import dataclasses
import difflib
import math
import types
import typing

from aiida_irspec.exceptions import InputError

__all__ = ["REQUIRED", "Settings", "did_you_mean", "setting", "unknown_settings"]

REQUIRED = dataclasses.MISSING  # a setting without a default


def setting(default=REQUIRED, doc="", *, choices=(), minimum=None, maximum=None, exclusive_minimum=False,
            also=(), check=None, unit=""):
    """A field of a :class:`Settings` dataclass.

    default: the value when none is given (a dict or list is copied for each instance); REQUIRED for none.
    doc: the meaning, one sentence. choices: the allowed values. minimum / maximum: bounds of a number
    (``exclusive_minimum`` makes the lower one strict); also: strings accepted besides values of the field's
    type (e.g. "evidence" for a number); check: a callable(value) -> message or None for anything else;
    unit: shown in the docs.
    """
    metadata = {"doc": doc, "choices": tuple(choices), "minimum": minimum, "maximum": maximum,
                "exclusive_minimum": exclusive_minimum, "also": tuple(also), "check": check, "unit": unit}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=metadata)
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def did_you_mean(word, candidates):
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or an empty string."""
    hint = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def unknown_settings(given, known):
    """A message naming the keys of ``given`` that are not in ``known`` (with a "did you mean"), or None."""
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return None
    return "; ".join(f"unknown setting {key!r}{did_you_mean(key, known)}" for key in unknown) + \
        f"; known: {', '.join(sorted(known))}"


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _is_group(annotation):
    return isinstance(annotation, type) and issubclass(annotation, Settings)


def _plain(value):
    """A value as plain data: a nested dataclass as a dict."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if isinstance(value, Settings) else dataclasses.asdict(value)
    return _copy(value)


def _number_hint(value):
    """A hint for a number that YAML read as text (``1e-3`` without a dot is a string in YAML 1.1)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return ""
    return " (YAML reads it as text: write it as a number with a dot, e.g. 1.0e-3)" if isinstance(value, str) else ""


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_problem(annotation, value):
    """A description of what ``annotation`` expects when ``value`` does not have that type, else None."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if any(_type_problem(option, value) is None for option in options):
            return None
        return " or ".join(_type_problem(option, value) or "" for option in options)
    if annotation is type(None):
        return None if value is None else "null"
    if annotation is bool:
        return None if isinstance(value, bool) else "true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if annotation is float:
        return None if _is_number(value) and math.isfinite(value) else "a finite number"
    if annotation is str:
        return None if isinstance(value, str) else "a string"
    if annotation is dict or origin is dict:
        return None if isinstance(value, dict) else "a mapping"
    if annotation is list or origin is list:
        return None if isinstance(value, list) else "a list"
    return None


def _describe(field, annotation):
    """What a field allows, in words (used in messages and the docs)."""
    meta = field.metadata
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    kinds = [m for m in members if m is not type(None) and not (m is str and meta["also"])]
    if meta["choices"]:
        allowed = "one of " + ", ".join(repr(c) for c in meta["choices"])
    else:
        allowed = " or ".join(_type_problem(m, object()) or m.__name__ for m in kinds)
        if meta["minimum"] is not None:
            allowed += f" {'>' if meta['exclusive_minimum'] else '>='} {meta['minimum']:g}"
        if meta["maximum"] is not None:
            allowed += f"{' and' if meta['minimum'] is not None else ''} <= {meta['maximum']:g}"
    if meta["also"]:
        allowed += ", or one of " + ", ".join(repr(c) for c in meta["also"])
    if type(None) in members:
        allowed += ", or null"
    return allowed


class Settings:
    """Base of the settings groups, which are dataclasses (see the module documentation)."""

    @classmethod
    def _fields(cls):
        hints = typing.get_type_hints(cls)
        return [(field, hints[field.name]) for field in dataclasses.fields(cls) if field.init]

    @classmethod
    def problems(cls, values, path="", partial=False):
        """Everything wrong with the mapping ``values`` (a list of ``dotted.key: what is wrong`` strings);
        ``partial``: fields without a default may be missing (and the rules across fields are not applied)."""
        prefix = f"{path}." if path else ""
        if not isinstance(values, dict):
            return [f"{path or 'settings'}: expected a mapping, found {type(values).__name__}"]
        fields = cls._fields()
        names = [field.name for field, _ in fields]
        problems = [f"{prefix}{key}: unknown key{did_you_mean(key, names)}; allowed: {', '.join(names)}"
                    for key in values if key not in names]
        for field, annotation in fields:
            where = f"{prefix}{field.name}"
            if field.name not in values:
                if not partial and field.default is REQUIRED and field.default_factory is REQUIRED:
                    problems.append(f"{where}: missing; expected {_describe(field, annotation)}")
                continue
            problems.extend(cls._value_problems(where, field, annotation, values[field.name]))
        if not problems and not partial:
            problems.extend(cls.consistency_problems({**cls.defaults(), **values}, prefix))
        return problems

    @classmethod
    def value_problems(cls, name, value, path=None):
        """What is wrong with ``value`` for the field ``name`` (a list, empty when it is fine)."""
        field, annotation = next((f, a) for f, a in cls._fields() if f.name == name)
        return cls._value_problems(path or name, field, annotation, value)

    @classmethod
    def _value_problems(cls, where, field, annotation, value):
        if _is_group(annotation):
            return annotation.problems(value, where)
        if dataclasses.is_dataclass(annotation):  # a plain dataclass: its own constructor checks it
            if not isinstance(value, dict):
                return [f"{where}: expected a mapping, found {type(value).__name__}"]
            try:
                annotation(**value)
            except (TypeError, InputError) as error:
                return [f"{where}: {error}"]
            return []
        meta = field.metadata
        if isinstance(value, str) and meta["also"] and value in meta["also"]:
            return []
        expected = _type_problem(annotation, value)
        if expected is not None or (isinstance(value, str) and meta["also"]):  # strings: only those of ``also``
            return [f"{where}: {value!r} is not allowed; expected {_describe(field, annotation)}"
                    + _number_hint(value)]
        if meta["choices"] and value not in meta["choices"]:
            return [f"{where}: {value!r} is not allowed; expected {_describe(field, annotation)}"
                    + did_you_mean(value, meta["choices"])]
        if _is_number(value):
            low, high = meta["minimum"], meta["maximum"]
            if (low is not None and (value <= low if meta["exclusive_minimum"] else value < low)) or (
                    high is not None and value > high):
                return [f"{where}: {value!r} is out of range; expected {_describe(field, annotation)}"]
        if meta["check"] is not None and value is not None:
            message = meta["check"](value)
            if message:
                return [f"{where}: {message}"]
        return []

    @classmethod
    def consistency_problems(cls, values, prefix):
        """Rules that tie several fields together (``values`` complete and individually valid); none by default."""
        return []

    @classmethod
    def defaults(cls):
        """The default of every field that has one, as plain values."""
        result = {}
        for field, annotation in cls._fields():
            if _is_group(annotation):
                result[field.name] = annotation.defaults()
            elif field.default is not REQUIRED:
                result[field.name] = _plain(field.default)
            elif field.default_factory is not REQUIRED:
                result[field.name] = field.default_factory()
        return result

    @classmethod
    def from_dict(cls, values=None, path=""):
        """The group from a mapping (defaults filled in); :class:`InputError` listing every problem."""
        values = {} if values is None else values
        problems = cls.problems(values, path)
        if problems:
            raise InputError(f"invalid {path or cls.__name__}:\n  " + "\n  ".join(problems))
        kwargs = {}
        for field, annotation in cls._fields():
            if field.name not in values:
                continue
            value = values[field.name]
            if _is_group(annotation):
                value = annotation.from_dict(value, f"{path}.{field.name}" if path else field.name)
            elif dataclasses.is_dataclass(annotation):
                value = annotation(**value)
            kwargs[field.name] = _copy(value)
        return cls(**kwargs)

    def to_dict(self):
        """Plain values (nested groups as dicts), JSON-serialisable."""
        return {field.name: _plain(getattr(self, field.name)) for field, _ in self._fields()}

    @classmethod
    def port_validator(cls, path=""):
        """An AiiDA port validator of a ``Dict`` holding (part of) this group."""

        def validate(value, _):
            if value is None:
                return None
            problems = cls.problems(value.get_dict(), path)
            return "; ".join(problems) if problems else None

        return validate

    @classmethod
    def field_validator(cls, name, path=None):
        """An AiiDA port validator of a single-valued node (Int, Float, Str, Bool) holding the field ``name``."""
        def validate(value, _):
            if value is None:
                return None
            problems = cls.value_problems(name, value.value, path)
            return "; ".join(problems) if problems else None

        return validate

    @classmethod
    def reference_rows(cls):
        """(key, default, allowed, meaning) of every field, for the docs."""
        rows = []
        for field, annotation in cls._fields():
            if dataclasses.is_dataclass(annotation):
                rows.append((field.name, "", f"a mapping: {annotation.__name__}", field.metadata.get("doc", "")))
                continue
            if field.default is not REQUIRED:
                default = field.default
            elif field.default_factory is not REQUIRED:
                default = field.default_factory()
            else:
                default = "required"
            unit = field.metadata["unit"]
            rows.append((field.name, default, _describe(field, annotation) + (f" ({unit})" if unit else ""),
                         field.metadata["doc"]))
        return rows
