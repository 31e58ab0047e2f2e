"""Campaign files: overrides on the protocol of ``irspec.campaign``, and what to run where (no AiiDA import).

A campaign file is a YAML mapping with two kinds of keys:

* launch keys, read here: ``name`` and ``description`` (label and description of the campaign), ``protocol``
  (``fast``, ``moderate`` or ``precise``), ``structure`` (``file``, relative to the campaign file, and
  ``supercell``), ``codes`` (``engine`` and ``predict`` labels, an optional ``computer`` they are looked up on,
  scheduler ``options`` for every job), ``engine`` (default: from the engine code's plugin) and
  ``engine_inputs`` (the engine's extras, e.g. VASP's ``potential_family``, ``potential_mapping``,
  ``kpoints_distance`` and an ``ml_ff`` file relative to the campaign file);
* every other key overrides the protocol's inputs, nested as the input ports of ``irspec.campaign``
  (``temperature``, ``equilibration``, ``sampling``, ``learning``, ``spectrum``; see
  ``verdi plugin list aiida.workflows irspec.campaign``).

So ``aiida-irspec campaign run FILE`` and ``CampaignWorkChain.get_builder_from_protocol(..., overrides=FILE)``
give the same builder. The campaign files shipped with the package (:func:`packaged_campaign_files`) can be
named instead of a path: ``aiida-irspec campaign validate water_dimer_tblite``.

:func:`campaign_problems` checks the merged protocol inputs (plain values) with the settings groups that the
WorkChains' ports use, naming each problem by its dotted key; :func:`cross_problems` holds the rules that tie
several stages together (the WorkChain's input validator applies them too).
"""

import dataclasses
import hashlib
import os
import pathlib

from aiida_irspec.campaign.settings import FailureSettings, MdSettings, RunSettings, SelectionSettings
from aiida_irspec.exceptions import InputError
from aiida_irspec.model.settings import ModelSettings
from aiida_irspec.settings import did_you_mean
from aiida_irspec.spectra.settings import SpectrumSettings

SPEC_DIR = pathlib.Path(__file__).resolve().parent / "specs"
LAUNCH_KEYS = ("name", "description", "protocol", "structure", "codes", "engine", "engine_inputs")
#: The inputs of ``irspec.campaign`` that a campaign file overrides (the others are set by its builder).
OVERRIDE_KEYS = ("temperature", "equilibration", "sampling", "learning", "spectrum")
STRUCTURE_KEYS = ("file", "supercell")
CODE_KEYS = ("engine", "predict", "computer", "options")
#: The settings groups of the stages, by their dotted place in the campaign's inputs.
GROUPS = {"learning.selection": SelectionSettings, "learning.model": ModelSettings,
          "learning.failures": FailureSettings, "spectrum.runs": RunSettings, "spectrum.analysis": SpectrumSettings,
          "spectrum.failures": FailureSettings}
MAX_ATOMS = 100000


def packaged_campaign_files():
    """The campaign files shipped with the package: name (file stem) -> path."""
    return {path.stem: path for path in sorted(SPEC_DIR.glob("*.yaml"))}


def find_campaign_file(name_or_path):
    """The path of a campaign file given by path, or by the name of a packaged one (``water_dimer_tblite``).

    :raises InputError: when it is neither.
    """
    path = pathlib.Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    packaged = packaged_campaign_files()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if str(path.parent) == "." and name in packaged:
        return packaged[name]
    if path.exists():
        raise InputError(f"{path}: not a regular file")
    raise InputError(f"no campaign file {name_or_path!r}: not a file, nor a packaged campaign"
                     f"{did_you_mean(name, packaged)}; packaged: {', '.join(packaged)}")


@dataclasses.dataclass
class CampaignFile:
    """A campaign file read and its launch keys checked (see the module doc).

    path: where it was read; sha256: of its bytes; overrides: the protocol overrides (every non-launch key);
    structure_file: absolute path; supercell: [a, b, c]; codes: ``engine``, ``predict``, ``computer``,
    ``options``; engine_inputs: plain values (an ``ml_ff`` made an absolute path).
    """

    path: pathlib.Path
    sha256: str
    name: str | None
    description: str
    protocol: str | None
    engine: str | None
    structure_file: pathlib.Path | None
    supercell: list
    codes: dict
    engine_inputs: dict
    overrides: dict

    def record(self):
        """What the campaign stores of its file: the name and the checksum, no local path."""
        return {"name": self.path.name, "sha256": self.sha256}

    def code_label(self, key):
        """The full label (``label@computer``) of ``codes.<key>``; the bare label when no computer is named."""
        label, computer = self.codes.get(key), self.codes.get("computer")
        if label is None:
            raise InputError(f"{self.path}: codes.{key}: missing; give the label of an AiiDA code")
        return label if computer is None or "@" in label else f"{label}@{computer}"

    def load_structure(self):
        """The starting structure as ``ase.Atoms`` (supercell applied, Angstrom)."""
        import ase.io

        if self.structure_file is None:
            raise InputError(f"{self.path}: structure.file: missing; give a structure file (any format ASE reads)")
        from aiida_irspec.files import check_input_file

        check_input_file(self.structure_file, "structure.file")
        try:
            atoms = ase.io.read(self.structure_file)
        except Exception as error:  # noqa: BLE001 - ASE raises many kinds for unreadable files
            raise InputError(f"structure.file: cannot read {self.structure_file}: {error}") from None
        if self.supercell != [1, 1, 1]:
            if not atoms.pbc.all():
                raise InputError(f"structure.supercell: {self.structure_file} is not periodic, so it cannot be "
                                 "repeated")
            count = len(atoms) * self.supercell[0] * self.supercell[1] * self.supercell[2]
            if count > MAX_ATOMS:
                raise InputError(f"structure.supercell: {self.supercell} makes {count} atoms; at most {MAX_ATOMS}")
            atoms = atoms.repeat(self.supercell)
        return atoms


def read_campaign_file(name_or_path):
    """Read a campaign file (path or packaged name) and check its launch keys; :class:`CampaignFile`.

    :raises InputError: listing every problem of the launch keys (unknown ones with a "did you mean").
    """
    from aiida_irspec.files import load_yaml

    path = find_campaign_file(name_or_path)
    data = path.read_bytes()
    raw = load_yaml(path)
    if raw is None:
        raise InputError(f"{path}: the campaign file is empty")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys, found {type(raw).__name__}")
    problems = [f"{key}: unknown key{did_you_mean(key, LAUNCH_KEYS + OVERRIDE_KEYS)}; allowed: "
                f"{', '.join(LAUNCH_KEYS + OVERRIDE_KEYS)}" for key in raw if key not in LAUNCH_KEYS + OVERRIDE_KEYS]
    structure = _mapping(raw, "structure", STRUCTURE_KEYS, problems)
    codes = _mapping(raw, "codes", CODE_KEYS, problems)
    engine_inputs = dict(_mapping(raw, "engine_inputs", None, problems))
    for key in ("name", "description", "protocol", "engine"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{key}: expected a string, found {raw[key]!r}")
    supercell = structure.get("supercell", [1, 1, 1])
    if not (isinstance(supercell, list) and len(supercell) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 1000 for n in supercell)):
        problems.append(f"structure.supercell: {supercell!r} is not allowed; expected three integers from 1 to 1000")
    for key in ("engine", "predict", "computer"):
        if key in codes and not isinstance(codes[key], str):
            problems.append(f"codes.{key}: expected a code label (a string), found {codes[key]!r}")
    if "options" in codes and not isinstance(codes["options"], dict):
        problems.append(f"codes.options: expected a mapping of scheduler options, found {codes['options']!r}")
    computer = codes.get("computer")
    for key in ("engine", "predict"):
        label = codes.get(key)
        if isinstance(computer, str) and isinstance(label, str) and "@" in label \
                and label.rsplit("@", 1)[1] != computer:
            problems.append(f"codes.{key}: {label!r} names another computer than codes.computer ({computer!r}); "
                            f"give the bare label {label.rsplit('@', 1)[0]!r}")
    if problems:
        raise InputError(f"{path} is invalid:\n  " + "\n  ".join(problems))
    if isinstance(engine_inputs.get("ml_ff"), str):
        engine_inputs["ml_ff"] = str((path.parent / os.path.expanduser(engine_inputs["ml_ff"])).resolve())
    structure_file = structure.get("file")
    return CampaignFile(path=path, sha256=hashlib.sha256(data).hexdigest(), name=raw.get("name"),
                        description=raw.get("description", ""), protocol=raw.get("protocol"),
                        engine=raw.get("engine"),
                        structure_file=(None if structure_file is None
                                        else (path.parent / str(structure_file)).resolve()),
                        supercell=supercell, codes=codes, engine_inputs=engine_inputs,
                        overrides={key: value for key, value in raw.items() if key not in LAUNCH_KEYS})


def _mapping(raw, key, allowed, problems):
    """``raw[key]`` (a mapping, default empty); its unknown keys are problems when ``allowed`` is given."""
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{key}: expected a mapping, found {value!r}")
        return {}
    for name in value if allowed else ():
        if name not in allowed:
            problems.append(f"{key}.{name}: unknown key{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}")
    return value


def _at(tree, dotted):
    """The value at a dotted place of a nested dict, or None."""
    for key in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def campaign_problems(tree):
    """Everything wrong with the merged inputs of a campaign (plain values, nested as its ports): each settings
    group checked by its dataclass, the sampling run's numbers, and :func:`cross_problems`."""
    problems = MdSettings.value_problems("temperature", tree.get("temperature"))
    sampling = tree.get("sampling") or {}
    numbers = {key: sampling[key] for key in ("steps", "timestep", "stride", "seed") if key in sampling}
    problems += MdSettings.problems(numbers, "sampling", partial=True)
    for dotted, group in GROUPS.items():
        values = _at(tree, dotted)
        if values is not None:
            problems += group.problems(values, dotted)
    if not problems:
        problems += cross_problems(tree)
    return problems


def cross_problems(tree):
    """Rules across the stages (values individually valid): the equilibration inside the sampling run, a pool
    of at least the learning budget, the spectrum's normalisation."""
    problems = []
    sampling = tree.get("sampling") or {}
    steps, stride = sampling.get("steps"), sampling.get("stride", 1)
    equilibration = tree.get("equilibration", 0)
    if not (isinstance(equilibration, int) and not isinstance(equilibration, bool) and equilibration >= 0):
        return [f"equilibration: expected a number of MD steps >= 0, found {equilibration!r}"]
    if isinstance(steps, int) and isinstance(stride, int):
        if steps % stride:
            problems.append(f"sampling.stride: {stride} does not divide sampling.steps ({steps})")
        if equilibration >= steps:
            problems.append(f"equilibration: {equilibration} steps leave nothing of the sampling run ({steps} steps)")
        pool = max(0, (steps - equilibration) // stride)
        budget = {**SelectionSettings.defaults(), **(_at(tree, "learning.selection") or {})}["budget"]
        if pool < budget:
            problems.append(f"sampling: the pool holds about {pool} frames ((steps - equilibration) / stride), "
                            f"fewer than learning.selection.budget = {budget}")
    analysis = {**SpectrumSettings.defaults(), **(_at(tree, "spectrum.analysis") or {})}
    problems += SpectrumSettings.normalisation_problems(analysis, "spectrum.analysis.")
    return problems


def fill_normalisation(tree, atoms):
    """Give the spectrum of a campaign tree the normalisation of its structure (``ase.Atoms``) when it has none:
    the volume of a periodic cell, else the number of molecules
    (:func:`~aiida_irspec.spectra.settings.normalisation_of`)."""
    from aiida_irspec.spectra.settings import normalisation_of

    spectrum = tree.setdefault("spectrum", {})
    if not isinstance(spectrum.get("analysis") or {}, dict):
        return []  # not a mapping: campaign_problems names it
    analysis = dict(spectrum.get("analysis") or {})
    if analysis.get("volume") is None and analysis.get("molecules") is None:
        analysis.update(normalisation_of(atoms))
    spectrum["analysis"] = analysis
    molecules = analysis.get("molecules")
    if isinstance(molecules, int) and molecules > len(atoms):
        return [f"spectrum.analysis.molecules: {molecules} molecules in a structure of {len(atoms)} atoms"]
    return []


def reference_markdown():
    """The settings groups of a campaign as MyST markdown tables (for docs/campaign.md)."""
    lines = []
    for dotted, group in (("sampling", MdSettings), *GROUPS.items()):
        lines += [f"### `{dotted}` ({group.__name__})", "", (group.__doc__ or "").strip().splitlines()[0], "",
                  "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for key, default, allowed, meaning in group.reference_rows():
            shown = "required" if default == "required" else f"`{_yaml_value(default)}`"
            lines.append(f"| `{key}` | {shown if default != '' else ''} | {allowed} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _yaml_value(value):
    """A default as it would be written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return str(value)
