"""Campaign files and settings groups (no profile): every packaged campaign validates; wrong keys, types and values
are named by their dotted key with what is allowed (and a "did you mean"); every default is held once."""

import copy
import pathlib

import pytest
import yaml

from aiida_irspec.campaign.settings import FailureSettings, MdSettings, RunSettings, SelectionSettings
from aiida_irspec.campaign.spec import (
    GROUPS,
    campaign_problems,
    fill_normalisation,
    find_campaign_file,
    packaged_campaign_files,
    read_campaign_file,
    reference_markdown,
)
from aiida_irspec.exceptions import InputError
from aiida_irspec.model.settings import ModelSettings
from aiida_irspec.spectra.settings import DEFAULT_WIDTH_CM1, SpectrumSettings

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGED = packaged_campaign_files()


def campaign_tree(overrides=None, protocol="fast"):
    """The merged inputs of a campaign (plain values) for ``overrides``."""
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    return CampaignWorkChain.get_protocol_tree(protocol, overrides)


def problems_of(overrides, atoms=None):
    import ase.io

    tree = campaign_tree(overrides)
    atoms = atoms if atoms is not None else ase.io.read(PACKAGED["water_dimer_tblite"].parent / "structures"
                                                        / "water_dimer.xyz")
    return fill_normalisation(tree, atoms) + campaign_problems(tree)


def test_packaged_campaigns_and_the_repository_links():
    assert {"water_dimer_tblite", "water_dimer_cluster", "zro2_vasp_mlff", "water_liquid_vasp_mlff"} <= set(PACKAGED)
    for name, path in PACKAGED.items():
        link = REPO / "workflows" / path.name
        assert link.resolve() == path, f"workflows/{path.name} should link to the packaged {name}"


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_campaign_validates_and_its_structure_loads(name):
    source = read_campaign_file(name)
    assert source.path == PACKAGED[name] and len(source.sha256) == 64
    assert source.record() == {"name": f"{name}.yaml", "sha256": source.sha256}
    atoms = source.load_structure()
    tree = campaign_tree(source.overrides, source.protocol)
    assert fill_normalisation(tree, atoms) + campaign_problems(tree) == []
    analysis = tree["spectrum"]["analysis"]
    assert (analysis.get("volume") is None) != (analysis.get("molecules") is None)


def test_found_by_path_or_name_and_a_close_name_suggested(tmp_path):
    assert find_campaign_file("water_dimer_tblite.yaml") == PACKAGED["water_dimer_tblite"]
    assert find_campaign_file(REPO / "workflows" / "water_dimer_tblite.yaml") == PACKAGED["water_dimer_tblite"]
    with pytest.raises(InputError, match="did you mean 'water_dimer_tblite'"):
        find_campaign_file("water_dimer_tblit")
    with pytest.raises(InputError, match="not a regular file"):
        find_campaign_file(tmp_path)


def test_every_default_is_held_once_by_its_group():
    """The library, CLI and WorkChains read the defaults from the groups (spot checks of the places that had
    their own copies before)."""
    import inspect

    from aiida_irspec.spectra import green_kubo

    assert SpectrumSettings().width_cm1 is None and green_kubo.DEFAULT_WIDTH_CM1 == DEFAULT_WIDTH_CM1
    assert SpectrumSettings().window == inspect.signature(green_kubo.green_kubo_spectrum).parameters["window"].default
    from aiida_irspec.model.descriptors import DescriptorSettings

    assert ModelSettings.defaults()["descriptor"] == DescriptorSettings().to_dict()
    tree = campaign_tree({}, "moderate")
    assert tree["learning"]["selection"]["budget"] == 40  # the protocol's level
    assert "window" not in tree["spectrum"].get("analysis", {})  # not restated: the group's default holds


@pytest.mark.parametrize("overrides, start, says", [
    ({"learning": {"selection": {"budgte": 10}}}, "learning.selection.budgte: unknown key", "did you mean 'budget'"),
    ({"spectrum": {"analysis": {"widht_cm1": 10}}}, "spectrum.analysis.widht_cm1: unknown key",
     "did you mean 'width_cm1'"),
    ({"learning": {"model": {"kind": "dipol"}}}, "learning.model.kind: 'dipol' is not allowed",
     "did you mean 'dipole'"),
    ({"learning": {"model": {"regularization": "1e-3"}}}, "learning.model.regularization: '1e-3' is not allowed",
     "YAML reads it as text"),
    ({"spectrum": {"analysis": {"quantum_correction": "classical"}}}, "spectrum.analysis.quantum_correction",
     "'schofield'"),
    ({"spectrum": {"runs": {"number": 10**30}}}, "spectrum.runs.number: 1000000000000000000000000000000 is out",
     "<= 10000"),
    ({"spectrum": {"runs": {"steps": 10**15}}}, "spectrum.runs.steps", "out of range"),
    ({"spectrum": {"failures": {"max_concurrent": 10**9}}}, "spectrum.failures.max_concurrent", "out of range"),
    ({"temperature": 1e300}, "temperature: 1e+300 is out of range", "<= 100000"),
    ({"temperature": "hot"}, "temperature: 'hot' is not allowed", "a finite number"),
    ({"temperature": True}, "temperature: True is not allowed", "a finite number"),
    ({"spectrum": {"runs": {"number": 0}}}, "spectrum.runs.number: 0 is out of range", ">= 1"),
    ({"spectrum": {"runs": {"number": -3}}}, "spectrum.runs.number: -3 is out of range", ">= 1"),
    ({"learning": {"failures": {"max_failed_fraction": 1.5}}}, "learning.failures.max_failed_fraction", "<= 1"),
    ({"spectrum": {"analysis": {"bands": {"bend": [1800, 1400]}}}}, "spectrum.analysis.bands", "low < high"),
    ({"sampling": {"steps": 10.5}}, "sampling.steps: 10.5 is not allowed", "an integer"),
    ({"learning": {"model": {"descriptor": {"cutof": 3}}}}, "learning.model.descriptor", "cutof"),
    ({"spectrum": {"analysis": {"molecules": 10**6}}}, "spectrum.analysis.molecules", "molecules in a structure"),
])
def test_invalid_settings_are_named_by_their_dotted_key(overrides, start, says):
    lines = problems_of(overrides)
    assert any(line.startswith(start) and says in line for line in lines), lines


def test_unknown_ports_are_refused_with_a_suggestion():
    with pytest.raises(InputError, match=r"learnig: unknown input \(did you mean 'learning'\?\)"):
        campaign_tree({"learnig": {}})
    with pytest.raises(InputError, match=r"spectrum.analysys: unknown input \(did you mean 'analysis'\?\)"):
        campaign_tree({"spectrum": {"analysys": {}}})


def test_rules_across_stages():
    (line,) = problems_of({"sampling": {"steps": 200, "stride": 10}, "equilibration": 0,
                           "learning": {"selection": {"budget": 40}}})
    assert line.startswith("sampling: the pool holds about 20 frames")
    (line,) = problems_of({"sampling": {"steps": 5005, "stride": 10}, "equilibration": 0})
    assert line == "sampling.stride: 10 does not divide sampling.steps (5005)"
    (line,) = problems_of({"learning": {"selection": {"initial": 30, "holdout": 20, "budget": 40}}})
    assert line.startswith("learning.selection.budget") and "initial + holdout" in line
    lines = problems_of({"equilibration": 10**6})
    assert any(line.startswith("equilibration: 1000000 steps leave nothing") for line in lines)


def test_a_spectrum_needs_its_normalisation():
    tree = campaign_tree({})
    assert any("give exactly one: volume" in line for line in campaign_problems(tree))
    both = campaign_tree({"spectrum": {"analysis": {"volume": 100.0, "molecules": 2}}})
    assert any("give exactly one" in line for line in campaign_problems(both))


def test_normalisation_follows_the_structure():
    import ase.io

    dimer = ase.io.read(PACKAGED["water_dimer_tblite"].parent / "structures" / "water_dimer.xyz")
    tree = campaign_tree({})
    assert fill_normalisation(tree, dimer) == [] and tree["spectrum"]["analysis"] == {"molecules": 2}
    cell = read_campaign_file("zro2_vasp_mlff").load_structure()
    tree = campaign_tree({})
    fill_normalisation(tree, cell)
    assert tree["spectrum"]["analysis"]["volume"] == pytest.approx(cell.get_volume())


def test_a_section_that_is_no_mapping_is_named_not_a_traceback(tmp_path):
    """Found by the fuzzing of campaign files: ``spectrum.analysis`` (or ``spectrum``) given as text."""
    import shutil

    from aiida_irspec.workflows.campaign import validate_campaign_file

    good = yaml.safe_load(PACKAGED["water_dimer_tblite"].read_text())
    shutil.copytree(PACKAGED["water_dimer_tblite"].parent / "structures", tmp_path / "structures")
    for spectrum, says in [({**good["spectrum"], "analysis": "mo"}, "spectrum.analysis: expected a mapping"),
                           (3, "spectrum: expected a mapping")]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**good, "spectrum": spectrum}))
        with pytest.raises(InputError, match=says):
            validate_campaign_file(path)


def test_launch_keys_are_checked(tmp_path):
    good = yaml.safe_load(PACKAGED["water_dimer_tblite"].read_text())
    for change, says in [({"codes": {"engine": "tblite@localhost", "predcit": "x"}}, "codes.predcit: unknown key"),
                         ({"structure": {"file": "x.xyz", "supercel": [2, 2, 2]}}, "did you mean 'supercell'"),
                         ({"structure": "water.xyz"}, "structure: expected a mapping"),
                         ({"structure": {"file": "x", "supercell": [2, 2]}}, "three integers"),
                         ({"codes": {"computer": "cluster", "engine": "tblite@localhost", "predict": "irspec"}},
                          "names another computer than codes.computer")]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**good, **change}))
        with pytest.raises(InputError, match=says):
            read_campaign_file(path)


def test_files_that_are_not_campaigns(tmp_path):
    for content, says in [("", "empty"), ("[1, 2]", "expected a mapping"), ("name: x\n  engine: [tblite\n", "YAML"),
                          ("name: a\nname: b\n", "duplicate")]:
        path = tmp_path / "c.yaml"
        path.write_text(content)
        with pytest.raises(InputError, match=says):
            read_campaign_file(path)


def test_structure_file_and_supercell(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("structure: {file: nowhere.xyz}\n")
    with pytest.raises(InputError, match="nowhere.xyz"):
        read_campaign_file(path).load_structure()
    path.write_text(f"structure: {{file: {PACKAGED['water_dimer_tblite'].parent / 'structures' / 'water_dimer.xyz'}, "
                    "supercell: [2, 1, 1]}\n")
    with pytest.raises(InputError, match="not periodic"):
        read_campaign_file(path).load_structure()
    path.write_text(f"structure: {{file: {PACKAGED['zro2_vasp_mlff'].parent / 'structures' / 'ZrO2_tetragonal.vasp'},"
                    " supercell: [1000, 1000, 1000]}\n")
    with pytest.raises(InputError, match="atoms; at most"):
        read_campaign_file(path).load_structure()


@pytest.mark.parametrize("group", [SelectionSettings, RunSettings, FailureSettings, ModelSettings, SpectrumSettings])
def test_groups_round_trip_and_refuse_unknown_keys(group):
    settings = group.from_dict({})
    assert group.from_dict(settings.to_dict()) == settings
    with pytest.raises(InputError, match="unknown key"):
        group.from_dict({"no_such_setting": 1})


def test_md_settings_are_the_port_limits():
    assert MdSettings.value_problems("steps", 0) and MdSettings.value_problems("steps", 10) == []
    assert MdSettings.value_problems("temperature", -1.0)


def test_reference_lists_every_setting_and_the_docs_carry_it(tmp_path):
    """docs/campaign.md carries the current protocols, ports and settings (regenerated, nothing changes)."""
    import shutil

    from aiida_irspec.workflows.reference import regenerate

    text = reference_markdown()
    for dotted, group in GROUPS.items():
        assert f"### `{dotted}`" in text
        for key, *_ in group.reference_rows():
            assert f"| `{key}` |" in text
    copy_of_docs = tmp_path / "campaign.md"
    shutil.copy(REPO / "docs" / "campaign.md", copy_of_docs)
    regenerate(copy_of_docs)
    assert copy_of_docs.read_text() == (REPO / "docs" / "campaign.md").read_text(), \
        "regenerate it: python -m aiida_irspec.workflows.reference docs/campaign.md"
    assert "| `learning.selection` | Dict |" in copy_of_docs.read_text()


def test_inputs_are_not_modified():
    overrides = {"learning": {"selection": {"budget": 20}}}
    kept = copy.deepcopy(overrides)
    campaign_tree(overrides)
    assert overrides == kept
