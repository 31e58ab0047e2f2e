"""``aiida-irspec campaign run / status / report`` and ``verdi data irspec spectrum / model`` on one real tiny
campaign (tblite, run once for the module through the command line): progress lines, the campaign named by PK, UUID
or label, the report folder with everything the README promises, the CSV header and range, the figures, and the
outputs checked before any work."""

import re
import secrets

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import tiny_campaign_spec

pytest.importorskip("tblite")


@pytest.fixture(scope="module")
def finished(aiida_profile, tmp_path_factory):
    """(campaign node, output of `campaign run`) of a tiny water-dimer campaign with a label of its own."""
    from aiida import orm

    from aiida_irspec.cli import cli
    from aiida_irspec.cli.demo import irspec_executable, setup_codes, setup_computer

    computer, _ = setup_computer("localhost-cli-campaign")
    setup_codes(computer, irspec_executable())
    spec = tiny_campaign_spec(f"tblite@{computer.label}", f"irspec@{computer.label}")
    spec["name"] = f"cli-campaign-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("campaign") / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = CliRunner().invoke(cli, ["-p", aiida_profile.name, "campaign", "run", str(path)])
    assert out.exit_code == 0, out.output
    node = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": spec["name"]}).one()[0]
    return node, out.output


def invoke(*arguments):
    from aiida_irspec.cli import cli

    return CliRunner().invoke(cli, list(map(str, arguments)))


def verdi(*arguments):
    from aiida.cmdline.commands.cmd_verdi import verdi as verdi_command

    return CliRunner().invoke(verdi_command, list(map(str, arguments)))


def test_run_prints_progress_and_the_status(finished):
    node, output = finished
    assert node.is_finished_ok
    assert "progress: stage 1/3 sampling | MD run 0/1 done" in output
    assert "progress: stage 2/3 learning | reference jobs 7/7 done (0 failed, 0 running)" in output
    assert "progress: stage 3/3 spectrum | NVE runs with dP/dt 2/2 done" in output
    assert "[CampaignWorkChain|" not in output.split("stage 1/3 sampling:")[0]  # no report before the first stage
    assert "launching TbliteBornChargesCalculation" not in output  # the jobs' own reports only with -v info
    assert "reference jobs     7 done, 0 failed, 0 running (budget 7)" in output


@pytest.mark.parametrize("how", ["pk", "uuid", "label"])
def test_status_by_pk_uuid_or_label(finished, how):
    node, _ = finished
    out = invoke("campaign", "status", getattr(node, how))
    assert out.exit_code == 0, out.output
    lines = dict(line.split(None, 1) for line in out.output.splitlines()[1:-1] if not line.startswith("-"))
    assert lines["campaign"].startswith(f"{node.label} <{node.pk}> {node.uuid}")
    assert "stage              done" in out.output and "NVE runs           2 done, 0 failed, 0 running (of 2)" \
        in out.output
    assert "model              5 training structures, error 0.0" in out.output


def test_status_is_a_few_queries(finished):
    """The call tree in one query, the latest model and the inputs in two more: well under a second here, where
    walking ``called_descendants`` took seconds (6.8 s on the demo campaign)."""
    import time

    from aiida_irspec.cli.campaign import campaign_status

    node, _ = finished
    start = time.perf_counter()
    status = campaign_status(node)
    assert time.perf_counter() - start < 5  # generous: the machine may be loaded; docs/cli.md has the measurement
    references = [n for n in node.called_descendants if n.process_type == "aiida.workflows:irspec.born_charges"]
    assert status["reference_jobs"]["finished"] == len(references) == 7
    assert status["runs"] == {"finished": 2, "failed": 0, "running": 0}


def test_status_refuses_what_is_not_a_campaign(finished):
    node, _ = finished
    stage = node.base.links.get_outgoing(link_label_filter="learning").one().node
    out = invoke("campaign", "status", stage.pk)
    assert out.exit_code == 2 and "ActiveLearningWorkChain" in out.output and "is not an irspec.campaign" in out.output
    out = invoke("campaign", "status", node.outputs.spectrum.spectrum.pk)
    assert out.exit_code == 2 and "no WorkflowNode found" in out.output


def test_report_writes_everything(finished, tmp_path):
    from aiida_irspec.spectra.io import read_spectrum_csv
    from aiida_irspec.spectra.plotting import default_xlim

    node, _ = finished
    folder = tmp_path / "new" / "report"  # made by the command
    out = invoke("campaign", "report", node.label, "-o", folder)
    assert out.exit_code == 0, out.output
    for name in ("report.md", "spectrum.csv", "spectrum.png", "learning.png", "parity.png",
                 f"provenance_{node.pk}.dot"):
        assert (folder / name).stat().st_size > 200, name
    report = (folder / "report.md").read_text()
    assert f"# Campaign {node.label} <{node.pk}>" in report and node.uuid in report
    assert "| stretch |" in report and "![Spectrum](spectrum.png)" in report and "(parity.png)" in report
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary file
    columns, comments = read_spectrum_csv(folder / "spectrum.csv")
    assert f"campaign: {node.label} <{node.pk}> uuid {node.uuid}" in comments
    assert any("docs/theory.md" in line for line in comments) and not any("DESIGN" in line for line in comments)
    assert any(line.startswith("units: frequency_cm1 in cm^-1") for line in comments)
    spectrum = node.outputs.spectrum.spectrum
    xlim = default_xlim([spectrum.to_averaged(), node.outputs.spectrum.reference_spectrum.to_averaged()])
    assert columns["frequency_cm1"][-1] <= xlim[1] < spectrum.frequency_cm1[-1]
    assert np.allclose(columns["absorption"], spectrum.mean[: len(columns["absorption"])], rtol=1e-8)

    out = invoke("campaign", "report", node.pk, "-o", tmp_path / "all", "--csv-range", "all")
    assert out.exit_code == 0, out.output
    columns, _ = read_spectrum_csv(tmp_path / "all" / "spectrum.csv")
    assert len(columns["frequency_cm1"]) == len(spectrum.frequency_cm1)


def test_report_output_is_checked_before_any_work(finished, tmp_path):
    node, _ = finished
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    out = invoke("campaign", "report", node.pk, "-o", blocker)
    assert out.exit_code == 2 and "is a file" in out.output  # click's own check of a folder option
    out = invoke("campaign", "report", node.pk, "-o", blocker / "under")
    assert out.exit_code == 14 and "is a file, not a folder" in out.output and "Traceback" not in out.output
    folder = tmp_path / "full"
    (folder / "spectrum.png").mkdir(parents=True)  # a folder where a file goes
    out = invoke("campaign", "report", node.pk, "-o", folder)
    assert out.exit_code == 14 and "spectrum.png: is a directory" in out.output
    assert sorted(p.name for p in folder.iterdir()) == ["spectrum.png"]  # nothing written before the check
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("how", ["pk", "uuid", "label"])
def test_verdi_data_spectrum_show(finished, how, aiida_profile):
    node, _ = finished
    spectrum = node.outputs.spectrum.spectrum
    spectrum.label = f"spectrum of {node.label}"
    out = verdi("-p", aiida_profile.name, "data", "irspec", "spectrum", "show", getattr(spectrum, how))
    assert out.exit_code == 0, out.output
    assert f"IRSpectrumData<{spectrum.pk}> {spectrum.uuid}" in out.output
    assert f"{node.label} <{node.pk}>" in out.output and "km/mol/cm^-1" in out.output
    assert "stretch  3000-4000" in out.output and "docs/theory.md" in out.output


def test_verdi_data_spectrum_export(finished, aiida_profile, tmp_path):
    from aiida_irspec.spectra.io import read_spectrum_csv

    node, _ = finished
    spectrum = node.outputs.spectrum.spectrum
    base = ["-p", aiida_profile.name, "data", "irspec", "spectrum", "export", spectrum.pk]
    for name in ("s.csv", "s.png", "s.svg"):
        out = verdi(*base, "-o", tmp_path / name)
        assert out.exit_code == 0, out.output
        assert (tmp_path / name).stat().st_size > 1000
    _, comments = read_spectrum_csv(tmp_path / "s.csv")
    assert any(node.uuid in line and spectrum.uuid in line for line in comments)
    out = verdi(*base, "-o", tmp_path / "s.xyz")
    assert out.exit_code == 2 and "cannot write a figure of type 'xyz'" in out.output
    out = verdi(*base, "-o", tmp_path)
    assert out.exit_code == 2 and "is a directory" in out.output


@pytest.mark.parametrize("how", ["pk", "uuid"])
def test_verdi_data_model_show(finished, how, aiida_profile):
    node, _ = finished
    model = node.outputs.learning.model
    out = verdi("-p", aiida_profile.name, "data", "irspec", "model", "show", getattr(model, how))
    assert out.exit_code == 0, out.output
    assert f"PolarizationModelData<{model.pk}>" in out.output and "kind" in out.output
    assert re.search(r"training set +5 structures, 2 held out", out.output) and "cutoff 4.0" in out.output
    assert re.search(r"hold-out +Z all", out.output) and "cross-validation" in out.output
