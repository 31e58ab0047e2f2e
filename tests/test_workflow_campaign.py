"""irspec.campaign end to end on tblite with tiny settings, and the campaign CLI (status, report)."""

import shutil

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import tiny_campaign_spec


@pytest.fixture
def tiny_spec(tmp_path, aiida_localhost, aiida_code_installed):
    executable = shutil.which("aiida-irspec")
    engine = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                  default_calc_job_plugin="irspec.tblite.md", label="tblite")
    predict = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                   default_calc_job_plugin="irspec.predict_pdot", label="irspec")
    spec = tiny_campaign_spec(engine.full_label, predict.full_label)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_campaign_runs_and_reports(tiny_spec, tmp_path):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.campaign.spec import load_spec
    from aiida_irspec.cli import cli
    from aiida_irspec.workflows.campaign import builder_from_spec

    runner = CliRunner()
    out = runner.invoke(cli, ["campaign", "run", str(tiny_spec)])
    assert out.exit_code == 0, out.output
    node = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": "tiny-water-dimer"}).one()[0]
    assert node.is_finished_ok, node.exit_message
    assert "reference jobs  7 done, 0 failed, 0 running" in out.output
    results = node.outputs
    history = results["history"].get_dict()
    assert history["rows"][-1]["attempted"] == 7 and results["model"].training_set_size == 5
    # the pool is the sampling run after its equilibration (frames 5..40)
    chosen = {frame for row in history["rows"] for frame in row["batch"]} | set(history["holdout"])
    assert min(chosen) >= 5 and max(chosen) <= 40
    spectrum, reference = results["spectrum"], results["reference_spectrum"]
    assert spectrum.n_runs == reference.n_runs == 2
    assert np.array_equal(spectrum.frequency_cm1, reference.frequency_cm1)

    out = runner.invoke(cli, ["campaign", "status", str(node.pk)])
    assert out.exit_code == 0, out.output
    assert "7 done, 0 failed, 0 running" in out.output and "2 done, 0 failed" in out.output
    assert f"error {results['model'].born_charges_rmse:.4f} |e|" in out.output
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

    # caching: a rerun starts no new engine job; a new window width reruns only the aggregation
    from aiida.manage.caching import enable_caching
    from aiida.orm import CalcJobNode

    def new_work(campaign):
        jobs = [n for n in campaign.called_descendants if isinstance(n, CalcJobNode)]
        functions = [n for n in campaign.called_descendants if n.process_type and "calculations:irspec." in
                     n.process_type and not isinstance(n, CalcJobNode)]
        return ([n for n in jobs if not n.base.caching.is_created_from_cache],
                sorted({n.process_type for n in functions if not n.base.caching.is_created_from_cache}))

    with enable_caching():
        again = run_get_node(builder_from_spec(load_spec(tiny_spec)))[1]
        assert again.is_finished_ok and new_work(again) == ([], [])
        spec = yaml.safe_load(tiny_spec.read_text())
        spec["spectrum"]["width_cm1"] = 100.0
        wider = tmp_path / "wider.yaml"
        wider.write_text(yaml.safe_dump(spec))
        changed = run_get_node(builder_from_spec(load_spec(wider)))[1]
        assert changed.is_finished_ok
        assert new_work(changed) == ([], ["aiida.calculations:irspec.aggregate_spectra"])


def test_builder_from_spec_and_cli_errors(tiny_spec, tmp_path):
    from aiida_irspec.campaign.spec import load_spec
    from aiida_irspec.cli import cli
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.workflows.campaign import builder_from_spec

    builder = builder_from_spec(load_spec(tiny_spec))
    assert builder.structure.get_ase().get_chemical_formula() == "H4O2" and not any(builder.structure.pbc)
    assert builder.metadata.label == "tiny-water-dimer"
    spec = yaml.safe_load(tiny_spec.read_text())
    spec["codes"]["engine"] = "no-such-code@nowhere"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="codes.engine: no unique AiiDA code 'no-such-code@nowhere'"):
        builder_from_spec(load_spec(wrong))
    out = CliRunner().invoke(cli, ["campaign", "status", "999999"])
    assert out.exit_code == 2 and "no node with PK 999999" in out.output


def test_builder_from_the_vasp_specs(aiida_computer_local):
    """The shipped VASP specs build: 96-atom ZrO2 supercell, POTCAR family and mapping as engine inputs."""
    import pathlib

    from aiida import orm

    from aiida_irspec.campaign.spec import load_spec
    from aiida_irspec.workflows.campaign import builder_from_spec

    cluster = aiida_computer_local(label="cluster")
    for label in ("vasp", "irspec"):
        orm.InstalledCode(label=label, computer=cluster, filepath_executable="/bin/true").store()
    workflows = pathlib.Path(__file__).resolve().parents[1] / "workflows"
    builder = builder_from_spec(load_spec(workflows / "zro2_vasp_mlff.yaml"))
    assert len(builder.structure.sites) == 96 and all(builder.structure.pbc)
    assert builder.engine_inputs["potential_family"].value == "PBE.54"
    assert builder.engine_inputs["potential_mapping"].get_dict() == {"Zr": "Zr_sv", "O": "O"}
    assert builder.engine_inputs["kpoints_distance"].value == 0.3 and "ml_ff" not in builder
    water = builder_from_spec(load_spec(workflows / "water_liquid_vasp_mlff.yaml"))
    assert len(water.structure.sites) == 192 and "kpoints_distance" in water.engine_inputs
