"""``aiida-irspec demo``: the setup (profile, computer, codes) from a fresh AiiDA folder is idempotent, the parity
of a stored model, and (slow) the whole demo on a tiny campaign, twice (the second run from the cache)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import SMALL_DESCRIPTOR, dimer_references, reference_nodes, tiny_campaign_spec

SETUP = """
import json
from aiida_irspec.cli.demo import irspec_executable, setup_codes, setup_computer, setup_profile
from aiida.manage.configuration import get_config
profile, profile_created = setup_profile()
computer, computer_created = setup_computer()
codes = setup_codes(computer, irspec_executable())
print(json.dumps({"profile": profile.name, "profile_created": profile_created, "storage": profile.storage_backend,
                  "broker": profile.process_control_backend, "caching": [profile.get_option("caching.default_enabled"),
                              profile.get_option("caching.enabled_for")],
                  "default": get_config().default_profile_name, "computer": [computer.pk, computer_created],
                  "configured": computer.is_configured, "transport": computer.transport_type,
                  "codes": {label: [code.pk, created, code.default_calc_job_plugin, str(code.filepath_executable)]
                            for label, (code, created) in codes.items()}}))
"""


def _fresh_env(aiida_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIIDA_")}
    return {**env, "AIIDA_PATH": str(aiida_path), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def test_setup_from_a_fresh_config_is_idempotent(tmp_path):
    """First call: profile irspec-demo (SQLite, no broker, caching on for irspec.* calculations only, default),
    localhost and both codes are
    created; second call (a new process): the same nodes, nothing created."""
    env = _fresh_env(tmp_path / "aiida")
    runs = [json.loads(subprocess.run([sys.executable, "-c", SETUP], env=env, capture_output=True, text=True,
                                      check=True).stdout.splitlines()[-1]) for _ in range(2)]
    first, second = runs
    assert first["profile"] == second["profile"] == "irspec-demo" == first["default"]
    assert first["profile_created"] and not second["profile_created"]
    assert first["storage"] == "core.sqlite_dos" and first["broker"] is None
    assert not first["caching"][0] and first["caching"][1] == ["aiida.calculations:irspec.*"]
    assert first["computer"][1] and second["computer"] == [first["computer"][0], False]
    assert first["configured"] and first["transport"] == "core.local"
    assert first["codes"]["tblite"][1:3] == [True, "irspec.tblite.md"]
    assert first["codes"]["irspec"][1:3] == [True, "irspec.predict_pdot"]
    assert first["codes"]["tblite"][3] == str(pathlib.Path(sys.executable).parent / "aiida-irspec")
    for label in ("tblite", "irspec"):
        assert second["codes"][label][:2] == [first["codes"][label][0], False]


MAKE_DEFAULT = """
import shutil, sys
from aiida.manage.configuration import create_profile, get_config
config = get_config(create=True)
profile = create_profile(config, name=sys.argv[1], email="me@example.org", storage_backend="core.sqlite_dos",
                         storage_config={})
config.set_default_profile(profile.name, overwrite=True)
config.store()
if sys.argv[2] == "break":
    shutil.rmtree(profile.storage_config["filepath"])
"""


@pytest.mark.parametrize("state", ["working", "break"])
def test_a_working_default_profile_is_used_a_broken_one_skipped(tmp_path, state):
    env = _fresh_env(tmp_path / "aiida")
    subprocess.run([sys.executable, "-c", MAKE_DEFAULT, "mine", state], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", SETUP], env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    if state == "working":
        assert result["profile"] == "mine" and not result["profile_created"]
    else:
        assert "The default profile 'mine' does not load" in out
        assert result["profile"] == "irspec-demo" and result["profile_created"] and result["default"] == "mine"


def test_unknown_profile_is_a_clean_error(tmp_path):
    out = subprocess.run([str(pathlib.Path(sys.executable).parent / "aiida-irspec"), "-p", "nope", "demo"],
                         env=_fresh_env(tmp_path / "aiida"), capture_output=True, text=True)
    assert out.returncode == 3 and "no AiiDA profile 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_parity_and_graph_of_a_stored_model(aiida_profile, tmp_path, monkeypatch):
    """model_parity reads the fit's references back from provenance: its hold-out RMSE is the model's
    validation RMSE, and the plot is written; without graphviz's dot the provenance graph is its source."""
    from aiida import orm
    from aiida.engine import run

    from aiida_irspec.calculations.fit import fit_polarization_model
    from aiida_irspec.data.parity import model_parity, plot_parity
    from aiida_irspec.exceptions import InputError

    frames, charges = dimer_references()
    structures, born = reference_nodes(frames[:8], charges[:8])
    held_structures, held_born = reference_nodes(frames[8:], charges[8:], keys=[f"h{k}" for k in range(4)])
    model = run(fit_polarization_model, settings=orm.Dict({"descriptor": SMALL_DESCRIPTOR, "baseline": "zero"}),
                structures=structures, born_charges=born, holdout_structures=held_structures,
                holdout_born_charges=held_born)
    parity = model_parity(model)
    assert list(parity) == ["training", "hold-out"]
    reference, predicted, numbers = parity["hold-out"]
    assert reference.shape == predicted.shape == (4, 6, 3, 3) and list(numbers) == [8, 1, 1, 8, 1, 1]
    assert np.allclose(reference, np.array(charges[8:]))
    assert np.sqrt(np.mean((predicted - reference) ** 2)) == pytest.approx(model.born_charges_rmse, rel=1e-6)
    training_reference, training_predicted, _ = parity["training"]
    assert np.sqrt(np.mean((training_predicted - training_reference) ** 2)) < model.born_charges_rmse
    plot_parity(parity, path=tmp_path / "parity.png")
    assert (tmp_path / "parity.png").stat().st_size > 5000
    with pytest.raises(InputError, match="not created by fit_polarization_model"):
        model_parity(orm.Int(1).store())

    from aiida_irspec.cli.campaign import write_provenance_graph

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert write_provenance_graph(model, tmp_path) == [tmp_path / f"provenance_{model.pk}.dot"]
    assert "fit_polarization_model" in (tmp_path / f"provenance_{model.pk}.dot").read_text()


@pytest.fixture
def tiny_demo_spec(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_spec("tblite@localhost", "irspec@localhost")))
    return path


@pytest.mark.slow
def test_demo_end_to_end_twice(aiida_profile_clean, tiny_demo_spec, tmp_path):
    """The demo on a tiny campaign writes every result; run again, no job or calcfunction runs anew."""
    from aiida import orm

    from aiida_irspec.cli import cli

    runner = CliRunner()
    arguments = ["-p", aiida_profile_clean.name, "demo", "--spec", str(tiny_demo_spec)]
    out = runner.invoke(cli, [*arguments, "-o", str(tmp_path / "first")])
    assert out.exit_code == 0, out.output
    assert "code tblite@localhost" in out.output and "(created)" in out.output
    node = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": "tiny-water-dimer"}).one()[0]
    assert node.is_finished_ok and f"verdi -p {aiida_profile_clean.name} process show {node.pk}" in out.output
    folder = tmp_path / "first"
    report = (folder / "report.md").read_text()
    assert re.search(r"reference jobs +7 done, 0 failed, 0 running", report) and "| stretch |" in report
    assert "BornChargesWorkChain" in (folder / f"provenance_{node.pk}.dot").read_text()
    for name in ("spectrum.png", "spectrum.csv", "parity.png", "learning.png", "report.md"):
        assert (folder / name).stat().st_size > 500, name

    out = runner.invoke(cli, [*arguments, "-o", str(tmp_path / "second")])
    assert out.exit_code == 0, out.output
    assert "(created)" not in out.output
    again = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": "tiny-water-dimer"},
                                      project="*").order_by({orm.WorkflowNode: {"id": "desc"}}).first()[0]
    assert again.pk != node.pk and again.is_finished_ok
    fresh = [n for n in again.called_descendants if (isinstance(n, orm.CalcJobNode) or "calculations:irspec."
             in (n.process_type or "")) and not n.base.caching.is_created_from_cache]
    assert fresh == []
    first_csv, second_csv = ((path / "spectrum.csv").read_text().splitlines() for path in (folder, tmp_path / "second"))
    naming = ("# campaign:", "# spectrum:")  # the header lines that name the campaign and the spectrum node
    assert [line for line in first_csv if not line.startswith(naming)] == [
        line for line in second_csv if not line.startswith(naming)]
    assert f"# campaign: tiny-water-dimer <{again.pk}> uuid {again.uuid}" in second_csv
