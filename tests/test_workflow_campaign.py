"""irspec.campaign the AiiDA way: builders from protocols for both engines, the exposed stage namespaces, every
invalid setting refused at validation before any node exists, and (slow) the whole campaign on tblite."""

import shutil

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import WATER_DIMER, tiny_campaign_spec


@pytest.fixture
def tblite_codes(aiida_localhost, aiida_code_installed):
    """The engine and predict codes of a tblite campaign on localhost (both run `aiida-irspec`)."""
    executable = shutil.which("aiida-irspec")
    engine = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                  default_calc_job_plugin="irspec.tblite.md", label="tblite")
    predict = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                   default_calc_job_plugin="irspec.predict_pdot", label="irspec")
    return engine, predict


@pytest.fixture
def tiny_spec(tmp_path, tblite_codes):
    engine, predict = tblite_codes
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_spec(engine.full_label, predict.full_label)))
    return path


def dimer_structure():
    import ase.io

    from aiida_irspec.data.frames import structure_from_atoms

    return structure_from_atoms(ase.io.read(WATER_DIMER))


def node_count():
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()


def test_builder_from_protocol_exposes_the_stages(tblite_codes):
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    engine, predict = tblite_codes
    assert set(CampaignWorkChain.get_available_protocols()) == {"fast", "moderate", "precise"}
    builder = CampaignWorkChain.get_builder_from_protocol(engine, predict, dimer_structure(), protocol="fast",
                                                          overrides={"temperature": 250})
    assert builder.temperature.value == 250
    assert builder.sampling.engine.value == "tblite" and builder.sampling.code.uuid == engine.uuid
    assert builder.sampling.steps.value == 5000 and builder.sampling.stride.value == 10  # campaign.yaml, fast
    assert builder.learning.selection.get_dict()["budget"] == 24  # active_learning.yaml, fast
    assert builder.learning.born_charges.engine.value == "tblite"
    assert builder.spectrum.runs.get_dict()["number"] == 4  # ir_spectrum.yaml, fast
    assert builder.spectrum.analysis.get_dict() == {"molecules": 2}  # from the structure: two molecules
    assert builder.spectrum.reference_dipoles.value  # tblite records its own dipole: the check of the model
    assert builder.spectrum.predict.code.uuid == predict.uuid
    for namespace, child in (("sampling", "irspec.md"), ("learning", "irspec.active_learning"),
                             ("spectrum", "irspec.ir_spectrum")):
        assert namespace in CampaignWorkChain.spec().inputs and namespace in CampaignWorkChain.spec().outputs, child


def test_yaml_route_and_python_route_give_the_same_builder(tiny_spec, tblite_codes):
    from aiida_irspec.workflows.campaign import CampaignWorkChain, builder_from_file

    engine, predict = tblite_codes
    from_file = builder_from_file(tiny_spec)
    from_python = CampaignWorkChain.get_builder_from_protocol(engine, predict, dimer_structure(),
                                                              overrides=tiny_spec)
    assert builder_values(from_file) == builder_values(from_python)
    assert from_file.metadata.label == "tiny-water-dimer"
    record = from_file.spec_file.get_dict()
    assert record["name"] == "tiny.yaml" and len(record["sha256"]) == 64 and "/" not in str(record)


def builder_values(builder):
    """The builder's inputs as plain values (nodes by their content) for comparisons."""
    from aiida import orm

    def plain(value):
        if isinstance(value, orm.Dict):
            return value.get_dict()
        if isinstance(value, (orm.Int, orm.Float, orm.Str, orm.Bool)):
            return value.value
        if isinstance(value, orm.StructureData):
            return (value.get_ase().get_chemical_symbols(), np.round(value.get_ase().positions, 10).tolist())
        if isinstance(value, orm.AbstractCode):
            return value.uuid
        if isinstance(value, dict) or hasattr(value, "items"):
            return {k: plain(v) for k, v in value.items() if k != "metadata"}
        return value

    return plain(builder._inputs(prune=True))  # noqa: SLF001


@pytest.mark.parametrize("change, says", [
    (lambda b: b.learning.__setattr__("model", dict_of(kind="dipol")), "did you mean 'dipole'"),
    (lambda b: b.learning.__setattr__("selection", dict_of(budgte=3)), "did you mean 'budget'"),
    (lambda b: b.spectrum.__setattr__("analysis", dict_of(width_cm1=20)), "give exactly one: volume"),
    (lambda b: b.spectrum.__setattr__("runs", dict_of(number=10**30)), "runs.number"),
    (lambda b: b.spectrum.__setattr__("failures", dict_of(max_concurrent=10**9)), "failures.max_concurrent"),
    (lambda b: b.__setattr__("temperature", float_of(1e300)), "temperature"),
    (lambda b: b.sampling.__setattr__("steps", int_of(100)), "the pool holds about"),
    (lambda b: b.__setattr__("equilibration", int_of(10**6)), "equilibration"),
])
def test_invalid_settings_are_refused_before_any_node_exists(tblite_codes, change, says):
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.campaign import CampaignWorkChain

    engine, predict = tblite_codes
    builder = CampaignWorkChain.get_builder_from_protocol(engine, predict, dimer_structure(), protocol="fast")
    before = node_count()
    with pytest.raises(ValueError, match=says):  # when the port is set, or else when the inputs are validated
        change(builder)
        run_get_node(builder)
    assert node_count() == before


def dict_of(**values):
    from aiida import orm

    return orm.Dict(values)


def float_of(value):
    from aiida import orm

    return orm.Float(value)


def int_of(value):
    from aiida import orm

    return orm.Int(value)


def test_unknown_overrides_and_missing_codes_are_named(tiny_spec, tblite_codes, tmp_path):
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.workflows.campaign import CampaignWorkChain, builder_from_file

    engine, predict = tblite_codes
    with pytest.raises(InputError, match=r"learning.selectoin: unknown input \(did you mean 'selection'\?\)"):
        CampaignWorkChain.get_builder_from_protocol(engine, predict, dimer_structure(),
                                                    overrides={"learning": {"selectoin": {}}})
    with pytest.raises(InputError, match="spectrum.runs.number: 0 is out of range"):
        CampaignWorkChain.get_builder_from_protocol(engine, predict, dimer_structure(),
                                                    overrides={"spectrum": {"runs": {"number": 0}}})
    spec = yaml.safe_load(tiny_spec.read_text())
    spec["codes"]["engine"] = "no-such-code@nowhere"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="codes.engine: no unique AiiDA code 'no-such-code@nowhere'"):
        builder_from_file(wrong)


def test_a_periodic_structure_is_refused_for_tblite(tblite_codes):
    from aiida import orm
    from aiida.engine import run_get_node
    from ase.build import bulk

    from aiida_irspec.workflows.campaign import CampaignWorkChain

    engine, predict = tblite_codes
    builder = CampaignWorkChain.get_builder_from_protocol(engine, predict, orm.StructureData(ase=bulk("Si") * 2),
                                                          protocol="fast")
    before = node_count()
    with pytest.raises(ValueError, match="tblite takes molecules and clusters"):
        run_get_node(builder)
    assert node_count() == before


def test_builder_from_protocol_for_vasp_with_mock_vasp(aiida_localhost, tmp_path):
    """VASP: the engine from the code's plugin (a mock-vasp code), the POTCAR family and mapping passed to every
    stage, the 96-atom ZrO2 supercell of the packaged campaign, its volume as the spectrum's normalisation."""
    from aiida import orm

    from aiida_irspec.campaign.spec import read_campaign_file
    from aiida_irspec.data.frames import structure_from_atoms
    from aiida_irspec.workflows.campaign import CampaignWorkChain
    from vasp_mock import mock_vasp_code, upload_standin_family

    family = upload_standin_family(tmp_path / "potcars", ["Zr_sv", "O"])
    vasp = mock_vasp_code(aiida_localhost)
    predict = orm.InstalledCode(label="irspec", computer=aiida_localhost,
                                filepath_executable=shutil.which("aiida-irspec"),
                                default_calc_job_plugin="irspec.predict_pdot").store()
    source = read_campaign_file("zro2_vasp_mlff")
    structure = structure_from_atoms(source.load_structure())
    builder = CampaignWorkChain.get_builder_from_protocol(
        vasp, predict, structure, overrides="zro2_vasp_mlff", potential_family=family,
        potential_mapping={"Zr": "Zr_sv", "O": "O"})
    assert len(builder.structure.sites) == 96 and builder.temperature.value == 1800
    for namespace in (builder.sampling, builder.learning.born_charges, builder.spectrum.md):
        assert namespace.engine.value == "vasp" and namespace.code.uuid == vasp.uuid
        assert namespace.engine_inputs["potential_family"].value == family
    assert builder.spectrum.analysis["volume"] == pytest.approx(structure.get_cell_volume())
    assert not builder.spectrum.reference_dipoles.value
    assert builder.learning.model["kind"] == "combined" and builder.spectrum.runs["number"] == 20


@pytest.mark.slow
def test_campaign_runs_and_reports(tiny_spec, tmp_path):
    from aiida import orm

    from aiida_irspec.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["campaign", "run", str(tiny_spec)])
    assert out.exit_code == 0, out.output
    node = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": "tiny-water-dimer"}).one()[0]
    assert node.is_finished_ok, node.exit_message
    learning, spectra = node.outputs.learning, node.outputs.spectrum
    history = learning.history.get_dict()
    assert history["rows"][-1]["attempted"] == 7 and learning.model.training_set_size == 5
    # the pool is the sampling run after its equilibration (frames 5..40)
    chosen = {frame for row in history["rows"] for frame in row["batch"]} | set(history["holdout"])
    assert min(chosen) >= 5 and max(chosen) <= 40
    spectrum, reference = spectra.spectrum, spectra.reference_spectrum
    assert spectrum.n_runs == reference.n_runs == 2
    assert np.array_equal(spectrum.frequency_cm1, reference.frequency_cm1)
    assert node.outputs.sampling.trajectory.numsteps == 41

    out = runner.invoke(cli, ["campaign", "report", str(node.pk), "-o", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    assert "budget of reference jobs spent" in out.output and "stretch" in out.output
    for name in ("learning.png", "spectrum.png", "spectrum.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 500

    # provenance: the spectrum goes back to exactly the campaign's Born-charge jobs
    from aiida_irspec.data.provenance import born_charge_jobs_of, spectra_using

    jobs = born_charge_jobs_of(spectrum)
    campaign_jobs = {n.pk for n in node.called_descendants if n.process_type == "aiida.workflows:irspec.born_charges"}
    assert len(jobs) == 7 and {job.pk for job in jobs} == campaign_jobs
    assert [s.pk for s in spectra_using(jobs[0])] == [spectrum.pk]
