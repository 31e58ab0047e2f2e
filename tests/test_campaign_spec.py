"""The campaign spec: every shipped spec validates; wrong keys, types and values are named with what is allowed."""

import copy
import pathlib

import pytest

from aiida_irspec.campaign.spec import SCHEMA, check_files, load_spec, load_structure, reference_markdown, validate_spec
from aiida_irspec.exceptions import InputError

WORKFLOWS = pathlib.Path(__file__).resolve().parents[1] / "workflows"
SPECS = sorted(WORKFLOWS.glob("*.yaml"))

MINIMAL = {"name": "t", "engine": "tblite", "temperature": 300.0,
           "structure": {"file": "structures/water_dimer.xyz"},
           "codes": {"engine": "tblite@localhost", "predict": "irspec@localhost"}}


def problems_of(raw):
    """The lines of the InputError that validate_spec raises for ``raw``."""
    with pytest.raises(InputError) as info:
        validate_spec(raw)
    return [line.strip() for line in str(info.value).splitlines()[1:]]


def test_shipped_specs_exist():
    names = {p.name for p in SPECS}
    assert {"water_dimer_tblite.yaml", "zro2_vasp_mlff.yaml", "water_liquid_vasp_mlff.yaml"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_spec_validates_and_its_structure_loads(path):
    spec = load_spec(path)
    atoms = load_structure(spec)
    assert len(atoms) > 0
    assert spec["spec_file"] == str(path.resolve())
    assert pathlib.Path(spec["structure"]["file"]).is_absolute()
    # every section is filled in
    for key, item in SCHEMA.options.items():
        if not hasattr(item, "engine") or item.engine in (None, spec["engine"]):
            assert key in spec
    # validation is idempotent on its own output
    again = dict(spec)
    del again["spec_file"]
    assert validate_spec(again) == again


def test_defaults_filled_and_input_not_modified():
    raw = copy.deepcopy(MINIMAL)
    spec = validate_spec(raw)
    assert raw == MINIMAL
    assert spec["spectrum"]["window"] == "gaussian"
    assert spec["active_learning"]["strategy"] == "uncertainty"
    assert spec["tblite"]["method"] == "GFN2-xTB"
    assert "vasp" not in spec
    for regularization in ("cv", 1e-3):
        raw["model"] = {"regularization": regularization}
        assert validate_spec(raw)["model"]["regularization"] == regularization
    spec["spectrum"]["bands"]["x"] = [1, 2]  # defaults are copies, not shared
    assert validate_spec(MINIMAL)["spectrum"]["bands"] == {}


def test_unknown_key_is_named_with_suggestion_and_allowed_keys():
    raw = copy.deepcopy(MINIMAL)
    raw["spectrum"] = {"window": "hann", "widht_cm1": 10}
    (line,) = problems_of(raw)
    assert line.startswith("spectrum.widht_cm1: unknown key")
    assert "did you mean 'width_cm1'" in line
    assert "allowed: runs, steps" in line


def test_unknown_top_level_key():
    raw = dict(MINIMAL, temprature=300)
    (line,) = problems_of(raw)
    assert line.startswith("temprature: unknown key") and "'temperature'" in line


def test_wrong_choice_names_the_allowed_values():
    raw = dict(MINIMAL, engine="vsp")
    lines = problems_of(raw)
    assert any(line.startswith("engine: 'vsp' is not allowed; expected one of 'tblite', 'vasp'")
               and "did you mean 'vasp'" in line for line in lines)
    raw = copy.deepcopy(MINIMAL)
    raw["spectrum"] = {"quantum_correction": "classical"}
    (line,) = problems_of(raw)
    assert "spectrum.quantum_correction" in line and "'harmonic'" in line and "'schofield'" in line


@pytest.mark.parametrize("path, value, expected", [
    (("temperature",), "hot", "expected a number > 0"),
    (("temperature",), -5.0, "out of range; expected a number > 0"),
    (("temperature",), True, "expected a number"),
    (("sampling", "steps"), 10.5, "expected an integer >= 1"),
    (("structure", "supercell"), [2, 2], "three positive integers"),
    (("failures", "max_failed_fraction"), 1.5, "out of range; expected a number >= 0 and <= 1"),
    (("spectrum", "bands"), {"bend": [1800, 1400]}, "low < high"),
    (("codes", "options"), "none", "expected a mapping"),
    (("model", "regularization"), "best", "expected a number > 0, or one of 'evidence', 'cv'"),
    (("model", "body_order"), 5, "one of 2, 3, 4"),
])
def test_wrong_type_or_range(path, value, expected):
    raw = copy.deepcopy(MINIMAL)
    target = raw
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    (line,) = problems_of(raw)
    assert line.startswith(".".join(path) + ":") and expected in line


def test_missing_required_and_every_problem_at_once():
    raw = {"engine": "tblite", "structure": {}, "sampling": {"stride": 0}}
    lines = problems_of(raw)
    starts = {line.split(":")[0] for line in lines}
    assert {"name", "temperature", "structure.file", "codes.engine", "codes.predict", "sampling.stride"} <= starts


def test_engine_sections():
    raw = dict(MINIMAL, vasp={"potential_family": "PBE"})
    (line,) = problems_of(raw)
    assert line.startswith("vasp: only allowed with engine 'vasp'")
    raw = dict(MINIMAL, engine="vasp")
    lines = problems_of(raw)
    assert any(line.startswith("vasp.potential_family: missing") for line in lines)
    spec = validate_spec(dict(MINIMAL, engine="vasp", vasp={"potential_family": "PBE.54"}))
    assert spec["vasp"]["kpoints_distance"] is None and "tblite" not in spec


def test_consistency_rules():
    raw = copy.deepcopy(MINIMAL)
    raw["active_learning"] = {"initial": 30, "holdout": 20, "budget": 40}
    (line,) = problems_of(raw)
    assert line.startswith("active_learning.budget") and "initial + holdout" in line
    raw["active_learning"] = {"budget": 40}
    raw["sampling"] = {"steps": 200, "equilibration": 0, "stride": 10}
    (line,) = problems_of(raw)
    assert line.startswith("sampling:") and "about 20 frames" in line
    raw["sampling"] = {"steps": 5005, "stride": 10}
    (line,) = problems_of(raw)
    assert line == "sampling.stride: 10 does not divide sampling.steps (5005)"


def test_codes_computer_completes_bare_labels_and_refuses_another_computer():
    from aiida_irspec.campaign.spec import code_label

    full = validate_spec(MINIMAL)
    assert full["codes"]["computer"] is None and code_label(full, "engine") == "tblite@localhost"
    moved = validate_spec({**MINIMAL, "codes": {"computer": "cluster", "engine": "tblite",
                                                "predict": "irspec@cluster"}})
    assert [code_label(moved, key) for key in ("engine", "predict")] == ["tblite@cluster", "irspec@cluster"]
    assert problems_of({**MINIMAL, "codes": {**MINIMAL["codes"], "computer": "cluster"}}) == [
        "codes.engine: 'tblite@localhost' names another computer than codes.computer ('cluster'); give the bare "
        "label 'tblite'",
        "codes.predict: 'irspec@localhost' names another computer than codes.computer ('cluster'); give the bare "
        "label 'irspec'"]


def test_not_a_mapping_and_bad_yaml(tmp_path):
    (line,) = problems_of(dict(MINIMAL, structure="water.xyz"))
    assert line.startswith("structure: expected a mapping")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  engine: [tblite\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_spec(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_spec(empty)


def test_missing_files_and_periodicity(tmp_path):
    spec_file = tmp_path / "c.yaml"
    spec_file.write_text("name: x\nengine: tblite\ntemperature: 300\nstructure: {file: nowhere.xyz}\n"
                         "codes: {engine: a, predict: b}\n")
    spec = load_spec(spec_file)
    with pytest.raises(InputError, match="structure.file: no such file"):
        check_files(spec)
    periodic = load_spec(WORKFLOWS / "zro2_vasp_mlff.yaml")
    periodic["engine"] = "tblite"
    with pytest.raises(InputError, match="periodic"):
        load_structure(periodic)


def test_reference_markdown_lists_every_option():
    text = reference_markdown()
    for key, item in SCHEMA.options.items():
        names = item.options if hasattr(item, "options") else [key]
        for name in names:
            assert f"| `{name}` |" in text


def test_docs_spec_reference_is_generated_from_the_schema():
    docs = (WORKFLOWS.parent / "docs" / "campaign.md").read_text()
    start = docs.index("<!-- spec-reference:start -->\n") + len("<!-- spec-reference:start -->\n")
    end = docs.index("<!-- spec-reference:end -->")
    assert docs[start:end].strip() == reference_markdown().strip(), "regenerate docs/campaign.md's spec reference"
