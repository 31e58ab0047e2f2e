"""The campaign spec: schema with defaults, validation that names what is wrong, loading from YAML.

A campaign spec is a YAML mapping (see ``workflows/*.yaml`` at the top of the repository). It is
validated in full before anything is submitted: every unknown key, wrong type or value outside its
range is reported at once, each with its dotted path and what is allowed. The result is a plain,
JSON-serialisable ``dict`` with every default filled in, ready for an AiiDA ``Dict``.

This module imports no AiiDA (and ASE only in :func:`load_structure`).
"""

import difflib
import math
import pathlib
from dataclasses import dataclass

from aiida_irspec.exceptions import InputError
from aiida_irspec.model.descriptors import CUTOFF_FUNCTIONS, DescriptorSettings
from aiida_irspec.model.kinds import KINDS

REQUIRED = object()  # sentinel: the option has no default


@dataclass(frozen=True)
class Option:
    """One leaf of the schema.

    ``kind`` is one of ``str``, ``int``, ``float``, ``bool``, ``dict``, ``int3`` (three positive
    integers), ``bands`` (mapping name -> [low, high] in cm^-1). ``choices`` restricts the value to a
    set; ``minimum`` / ``maximum`` bound a number (``exclusive_minimum`` makes the lower bound strict);
    ``nullable`` allows ``null``; ``also`` lists strings accepted besides values of ``kind``.
    """

    kind: str
    default: object = REQUIRED
    doc: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    nullable: bool = False
    also: tuple = ()

    def describe(self):
        """What is allowed, in words (used in error messages and the generated reference)."""
        if self.choices:
            allowed = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            allowed = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
                       "dict": "a mapping", "int3": "three positive integers [a, b, c]",
                       "bands": "a mapping name: [low, high] (cm^-1, low < high)"}[self.kind]
            if self.minimum is not None:
                allowed += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
            if self.maximum is not None:
                allowed += f"{' and' if self.minimum is not None else ''} <= {self.maximum:g}"
        if self.also:
            allowed += ", or one of " + ", ".join(repr(c) for c in self.also)
        if self.nullable:
            allowed += " or null"
        return allowed


@dataclass(frozen=True)
class Section:
    """A mapping of named options and sub-sections; ``engine`` limits it to one engine."""

    options: dict
    doc: str = ""
    engine: str | None = None


ENGINES = ("tblite", "vasp")
PROTOCOLS = ("fast", "moderate", "precise")
STRATEGIES = ("uncertainty", "farthest_point", "random")
ERROR_ESTIMATES = ("holdout", "uncertainty", "both")
#: the model section's defaults are those of the descriptor itself
DESCRIPTOR = DescriptorSettings()

SCHEMA = Section(doc="A campaign: sampling MD -> active learning of the polarization model -> IR spectrum.", options={
    "name": Option("str", doc="Short name; labels every process of the campaign."),
    "description": Option("str", "", doc="Free text, stored with the campaign."),
    "engine": Option("str", doc="Engine for MD and Born charges.", choices=ENGINES),
    "temperature": Option("float", doc="Temperature of the sampling and of the spectrum runs (K).",
                          minimum=0, exclusive_minimum=True),
    "structure": Section(doc="The starting structure.", options={
        "file": Option("str", doc="Structure file (any format ASE reads), relative to the spec file."),
        "supercell": Option("int3", [1, 1, 1], doc="Repetitions of the cell along a, b, c (periodic cells)."),
        "molecules": Option("int", None, nullable=True, minimum=1,
                            doc="Number of molecules: the spectrum is then given per molecule (km/mol); "
                                "null gives it per volume (cm^-1, periodic cells)."),
    }),
    "codes": Section(doc="AiiDA codes (labels such as `tblite@localhost`, or `tblite` with `computer`).", options={
        "computer": Option("str", None, nullable=True,
                           doc="AiiDA Computer of the codes: a code label without `@computer` is looked up on it "
                               "(`aiida-irspec cluster setup` makes such codes), so that moving a campaign to "
                               "another computer is this one line."),
        "engine": Option("str", doc="Code that runs the engine (tblite: `aiida-irspec engine`; VASP: vasp)."),
        "predict": Option("str", doc="Code that runs `aiida-irspec pdot` on the computer where the "
                                     "trajectories are stored."),
        "options": Option("dict", {}, doc="Scheduler options for every job (resources, "
                                          "max_wallclock_seconds, queue_name, account, ...)."),
    }),
    "sampling": Section(doc="The NVT run whose frames form the pool of candidate configurations.", options={
        "steps": Option("int", 5000, minimum=1, doc="MD steps."),
        "timestep": Option("float", 0.5, minimum=0, exclusive_minimum=True, doc="Time step (fs)."),
        "stride": Option("int", 10, minimum=1, doc="Keep every stride-th frame in the pool."),
        "equilibration": Option("int", 1000, minimum=0, doc="Leading steps left out of the pool."),
        "seed": Option("int", 1, minimum=0, doc="Seed of the initial velocities and the thermostat."),
        "protocol": Option("str", "moderate", choices=PROTOCOLS, doc="Engine protocol of the MD."),
        "overrides": Option("dict", {}, doc="Engine-specific overrides of the MD protocol."),
    }),
    "born_charges": Section(doc="The reference (Born-charge) calculations.", options={
        "protocol": Option("str", "moderate", choices=PROTOCOLS, doc="Engine protocol."),
        "overrides": Option("dict", {}, doc="Engine-specific overrides of the protocol."),
        "max_concurrent": Option("int", 4, minimum=1, doc="Most reference jobs running at once."),
    }),
    "active_learning": Section(doc="Choice of the reference configurations and the stopping rule.", options={
        "strategy": Option("str", "uncertainty", choices=STRATEGIES,
                           doc="How each batch is chosen from the pool (random is for comparison)."),
        "initial": Option("int", 8, minimum=1, doc="Size of the seed set (farthest-point sampling)."),
        "batch": Option("int", 4, minimum=1, doc="Configurations added per iteration."),
        "budget": Option("int", 40, minimum=1, doc="Most reference calculations, hold-out set included."),
        "target_error": Option("float", 0.05, minimum=0, exclusive_minimum=True,
                               doc="Stop when the estimated Born-charge RMSE falls below this (|e|)."),
        "error_estimate": Option("str", "holdout", choices=ERROR_ESTIMATES,
                                 doc="Error from held-out reference structures, from the model's "
                                     "uncertainty on the pool, or both (the larger counts)."),
        "holdout": Option("int", 8, minimum=0, doc="Held-out reference structures (holdout, both)."),
        "seed": Option("int", 0, minimum=0, doc="Seed of random choices."),
    }),
    "model": Section(doc="The polarization model (aiida_irspec.model: DescriptorSettings and PolarizationModel).",
                     options={
        "cutoff": Option("float", DESCRIPTOR.cutoff, minimum=0, exclusive_minimum=True,
                         doc="Radial cutoff (Angstrom)."),
        "n_radial": Option("int", DESCRIPTOR.n_radial, minimum=1, doc="Radial basis functions."),
        "l_max": Option("int", DESCRIPTOR.l_max, minimum=1, doc="Largest angular channel."),
        "gaussian_width": Option("float", DESCRIPTOR.gaussian_width, minimum=0, exclusive_minimum=True,
                                 doc="Width of the atomic Gaussians (Angstrom)."),
        "cutoff_function": Option("str", DESCRIPTOR.cutoff_function, choices=CUTOFF_FUNCTIONS,
                                  doc="Smooth cutoff: cosine over the last cutoff_width, or over the whole range "
                                      "(Behler-Parrinello)."),
        "cutoff_width": Option("float", DESCRIPTOR.cutoff_width, minimum=0, exclusive_minimum=True,
                               doc="Switching width of the shifted cosine (Angstrom)."),
        "body_order": Option("int", DESCRIPTOR.body_order, choices=(2, 3, 4),
                             doc="2-body only, 2+3-body, or also 3-body times the centre's 2-body densities (4-body)."),
        "kind": Option("str", "dipole", choices=KINDS + ("auto",),
                       doc="Learned part: atomic dipoles, conserved charges flowing between neighbours, both, "
                           "or the kind with the lowest cross-validated error."),
        "transfer_cutoff": Option("float", DESCRIPTOR.transfer_cutoff, minimum=0, exclusive_minimum=True,
                                  doc="Charge-transfer range of the monopole part (Angstrom)."),
        "baseline": Option("str", "auto", choices=("auto", "formal", "mean", "zero"),
                           doc="Static charges added to the learned part; auto: formal charges for periodic "
                               "cells, for molecules the best of zero / species mean / formal by cross-validation."),
        "basis": Option("str", "linear", choices=("linear", "sparse"), doc="Linear features or sparse kernel."),
        "n_sparse": Option("int", None, nullable=True, minimum=1, doc="Sparse reference environments."),
        "regularization": Option("float", "evidence", minimum=0, exclusive_minimum=True, also=("evidence", "cv"),
                                 doc="Ridge parameter (standardised units), or how to choose it: Bayesian "
                                     "evidence (also gives the uncertainty) or cross-validation."),
    }),
    "spectrum": Section(doc="Independent NVE runs and their Green-Kubo spectra.", options={
        "runs": Option("int", 8, minimum=1, doc="Independent NVE runs."),
        "steps": Option("int", 4000, minimum=2, doc="Steps of each NVE run."),
        "timestep": Option("float", 0.5, minimum=0, exclusive_minimum=True, doc="Time step (fs)."),
        "stride": Option("int", 1, minimum=1, doc="Frames kept along each NVE run (dP/dt sampling)."),
        "decorrelation": Option("float", 200.0, minimum=0, exclusive_minimum=True,
                                doc="Time between the NVT snapshots that start the runs (fs)."),
        "seed": Option("int", 2, minimum=0, doc="Seed of the NVT run that provides the snapshots."),
        "window": Option("str", "gaussian", choices=("gaussian", "hann", "none"),
                         doc="Window on the correlation function."),
        "width_cm1": Option("float", 20.0, nullable=True, minimum=0, exclusive_minimum=True,
                            doc="Gaussian broadening (cm^-1)."),
        "max_correlation": Option("float", None, nullable=True, minimum=0, exclusive_minimum=True,
                                  doc="Longest correlation time used (fs); null: the whole run."),
        "quantum_correction": Option("str", "none", choices=("none", "harmonic", "standard", "schofield"),
                                     doc="Quantum correction factor."),
        "bands": Option("bands", {}, doc="Named bands summarised in the report."),
    }),
    "failures": Section(doc="Failure tolerance.", options={
        "max_failed_fraction": Option("float", 0.25, minimum=0, maximum=1,
                                      doc="Stop when more than this fraction of reference or NVE jobs "
                                          "fail (already computed results are kept)."),
    }),
    "tblite": Section(engine="tblite", doc="tblite settings (engine: tblite only).", options={
        "method": Option("str", "GFN2-xTB", choices=("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"), doc="Hamiltonian."),
        "charge": Option("int", 0, doc="Total charge (|e|)."),
        "multiplicity": Option("int", 1, minimum=1, doc="Spin multiplicity."),
        "friction": Option("float", 10.0, minimum=0, exclusive_minimum=True,
                           doc="Langevin friction of the NVT runs (1/ps)."),
    }),
    "vasp": Section(engine="vasp", doc="VASP settings (engine: vasp only).", options={
        "potential_family": Option("str", doc="POTCAR family uploaded to AiiDA."),
        "potential_mapping": Option("dict", {}, doc="Element -> POTCAR symbol (e.g. {Zr: Zr_sv}); "
                                                    "default: the element itself."),
        "kpoints_distance": Option("float", None, nullable=True, minimum=0, exclusive_minimum=True,
                                   doc="k-point spacing (1/Angstrom, with 2 pi) of the VASP runs; null: the "
                                       "protocol's."),
        "ml_ff": Option("str", None, nullable=True,
                        doc="VASP machine-learned force field file (ML_FF) for the MD, relative to the "
                            "spec file; null: the MD trains its force field on the fly."),
    }),
})


def _type_ok(option, value):
    """True when ``value`` has the option's kind (bools are not numbers)."""
    if value is None:
        return option.nullable
    if isinstance(value, str) and value in option.also:
        return True
    if option.kind == "int3":
        return (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))
    if option.kind == "bands":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and v[0] < v[1]
            for k, v in value.items())
    python_type = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}[option.kind]
    typed = isinstance(value, python_type) and (option.kind == "bool" or not isinstance(value, bool))
    return typed and (option.kind != "float" or math.isfinite(value))  # YAML reads .nan and .inf as floats


def _check_option(path, option, value):
    """Problems of one value (an empty list when it is fine)."""
    if not _type_ok(option, value):
        return [f"{path}: {value!r} is not allowed; expected {option.describe()}"]
    if value is None or (isinstance(value, str) and value in option.also):
        return []
    if option.choices and value not in option.choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in option.choices], n=1)
        return [f"{path}: {value!r} is not allowed; expected {option.describe()}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")]
    if option.kind in ("int", "float"):
        low_bad = option.minimum is not None and (
            value <= option.minimum if option.exclusive_minimum else value < option.minimum)
        high_bad = option.maximum is not None and value > option.maximum
        if low_bad or high_bad:
            return [f"{path}: {value!r} is out of range; expected {option.describe()}"]
    return []


def _validate_section(section, values, path, engine, problems):
    """Fill defaults of ``section`` into a copy of ``values``; append problems (str) to ``problems``."""
    prefix = f"{path}." if path else ""
    if not isinstance(values, dict):
        problems.append(f"{path or 'spec'}: expected a mapping, found {type(values).__name__}")
        return {}
    result = {}
    for key in values:
        if key not in section.options:
            hint = difflib.get_close_matches(str(key), list(section.options), n=1)
            problems.append(f"{prefix}{key}: unknown key"
                            + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + f"; allowed: {', '.join(section.options)}")
    for key, item in section.options.items():
        where = f"{prefix}{key}"
        if isinstance(item, Section):
            if item.engine is not None and engine != item.engine:
                if key in values:
                    problems.append(f"{where}: only allowed with engine {item.engine!r} (engine is {engine!r})")
                continue
            result[key] = _validate_section(item, values.get(key, {}), where, engine, problems)
        elif key in values:
            problems.extend(_check_option(where, item, values[key]))
            result[key] = values[key]
        elif item.default is REQUIRED:
            problems.append(f"{where}: missing; expected {item.describe()}")
        else:
            result[key] = _copy(item.default)
    return result


def _copy(value):
    """A deep copy of a default (lists and dicts of plain values)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def code_label(spec, key):
    """The full label (``label@computer``) of ``codes.<key>`` of a validated spec; a bare label when the spec
    names no computer."""
    label, computer = spec["codes"][key], spec["codes"]["computer"]
    return label if computer is None or "@" in label else f"{label}@{computer}"


def _check_consistency(spec, problems):
    """Rules that tie several options together."""
    codes = spec.get("codes", {})
    if isinstance(codes.get("computer"), str):
        for key in ("engine", "predict"):
            label = codes.get(key)
            if isinstance(label, str) and "@" in label and label.rsplit("@", 1)[1] != codes["computer"]:
                problems.append(f"codes.{key}: {label!r} names another computer than codes.computer "
                                f"({codes['computer']!r}); give the bare label {label.rsplit('@', 1)[0]!r}")
    learning = spec.get("active_learning", {})
    if not all(isinstance(learning.get(k), int) for k in ("initial", "holdout", "budget")):
        return
    holdout = learning["holdout"] if learning.get("error_estimate") in ("holdout", "both") else 0
    if learning.get("error_estimate") in ("holdout", "both") and holdout < 1:
        problems.append(f"active_learning.holdout: must be >= 1 when error_estimate is "
                        f"{learning['error_estimate']!r}")
    if learning["initial"] + holdout > learning["budget"]:
        problems.append(f"active_learning.budget: {learning['budget']} is smaller than initial + holdout "
                        f"({learning['initial']} + {holdout})")
    sampling = spec.get("sampling", {})
    if all(isinstance(sampling.get(k), int) for k in ("steps", "equilibration", "stride")):
        pool = max(0, (sampling["steps"] - sampling["equilibration"]) // sampling["stride"])
        if isinstance(learning.get("budget"), int) and pool < learning["budget"]:
            problems.append(f"sampling: the pool holds about {pool} frames ((steps - equilibration) / stride), "
                            f"fewer than active_learning.budget = {learning['budget']}")
    for name, section in (("sampling", sampling), ("spectrum", spec.get("spectrum", {}))):
        steps, stride = section.get("steps"), section.get("stride")
        if isinstance(steps, int) and isinstance(stride, int) and steps % stride:
            problems.append(f"{name}.stride: {stride} does not divide {name}.steps ({steps})")
        elif isinstance(steps, int) and isinstance(stride, int) and steps // stride < 2:
            problems.append(f"{name}.stride: leaves fewer than 2 stored frames of {name}.steps ({steps})")


def validate_spec(raw, source="campaign spec"):
    """Validate a campaign spec (a mapping, as read from YAML) and fill in its defaults.

    Returns a new ``dict`` with every section and option present. Raises :class:`InputError`
    listing every problem, each as ``dotted.path: what is wrong; what is allowed``.
    """
    problems = []
    engine = raw.get("engine") if isinstance(raw, dict) else None
    spec = _validate_section(SCHEMA, raw, "", engine if engine in ENGINES else None, problems)
    if not problems:
        _check_consistency(spec, problems)
    if problems:
        raise InputError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return spec


def load_spec(path):
    """Read and validate a YAML campaign spec; file paths inside become absolute (relative to the spec).

    Returns the validated ``dict`` (see :func:`validate_spec`) with the extra key ``spec_file``.
    """
    import yaml

    path = pathlib.Path(path).expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a text (UTF-8) file: {error.reason} at byte {error.start}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise InputError(f"{path}: not valid YAML"
                         + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
                         + f": {getattr(error, 'problem', error)}") from None
    if raw is None:
        raise InputError(f"{path}: the campaign spec is empty")
    spec = validate_spec(raw, source=str(path))
    spec["structure"]["file"] = str((path.parent / spec["structure"]["file"]).resolve())
    if spec["engine"] == "vasp" and spec["vasp"]["ml_ff"] is not None:
        spec["vasp"]["ml_ff"] = str((path.parent / pathlib.Path(spec["vasp"]["ml_ff"]).expanduser()).resolve())
    spec["spec_file"] = str(path)
    return spec


def check_files(spec):
    """Raise :class:`InputError` naming every file the (loaded) spec refers to that does not exist."""
    files = {"structure.file": spec["structure"]["file"]}
    if spec["engine"] == "vasp" and spec["vasp"]["ml_ff"] is not None:
        files["vasp.ml_ff"] = spec["vasp"]["ml_ff"]
    missing = [f"{key}: no such file {value}" for key, value in files.items() if not pathlib.Path(value).is_file()]
    if missing:
        raise InputError(f"{spec.get('spec_file', 'campaign spec')}: " + "; ".join(missing))


def load_structure(spec):
    """The starting structure of a loaded spec as ``ase.Atoms`` (supercell applied, positions in Angstrom).

    A tblite campaign needs a molecule or cluster (no periodic cell); a VASP campaign a periodic cell.
    """
    import ase.io

    check_files(spec)
    path = spec["structure"]["file"]
    try:
        atoms = ase.io.read(path)
    except Exception as error:  # ASE raises many kinds for unreadable files
        raise InputError(f"structure.file: cannot read {path}: {error}") from None
    if spec["structure"]["supercell"] != [1, 1, 1]:
        if not atoms.pbc.all():
            raise InputError(f"structure.supercell: {path} is not periodic, so it cannot be repeated")
        atoms = atoms.repeat(spec["structure"]["supercell"])
    if spec["engine"] == "tblite" and atoms.pbc.any():
        raise InputError(f"structure.file: {path} is periodic; the tblite engine takes molecules and clusters "
                         "only (its dipole is not defined for periodic cells)")
    if spec["engine"] == "vasp" and not atoms.pbc.all():
        raise InputError(f"structure.file: {path} has no periodic cell; VASP needs one")
    return atoms


def reference_markdown():
    """The spec reference as MyST markdown tables, generated from :data:`SCHEMA`."""
    return "\n".join(_reference_lines(SCHEMA, ""))


def _reference_lines(section, path):
    """Markdown lines of one section (a table of its options), then of its sub-sections."""
    lines = []
    leaves = [(k, v) for k, v in section.options.items() if isinstance(v, Option)]
    if leaves:
        lines += [f"### `{path or 'top level'}`", "", section.doc, "",
                  "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for key, option in leaves:
            default = "required" if option.default is REQUIRED else f"`{_yaml_value(option.default)}`"
            lines.append(f"| `{key}` | {default} | {option.describe()} | {option.doc} |")
        lines.append("")
    for key, item in section.options.items():
        if isinstance(item, Section):
            lines += _reference_lines(item, f"{path}.{key}" if path else key)
    return lines


def _yaml_value(value):
    """A default as it would be written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return str(value)
