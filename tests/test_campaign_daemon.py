"""Campaigns through a real daemon: the Python route (get_builder_from_protocol + submit) against the YAML route
(`aiida-irspec campaign run FILE`), bit for bit; and `campaign submit` on the production set-up (PostgreSQL +
RabbitMQ)."""

import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import WATER_DIMER, tiny_campaign_spec
from daemon_helpers import daemon_codes, daemon_computer, running_daemon, wait_until


def spectrum_arrays(spectrum):
    return {name: spectrum.get_array(name) for name in spectrum.get_arraynames()}


@pytest.mark.reliability  # about 5 min: two tiny campaigns
@pytest.mark.timeout(1500)
def test_python_route_on_the_daemon_equals_the_yaml_route(sqlite_zeromq_profile, tmp_path):
    """The tiny tblite campaign built in Python with get_builder_from_protocol and submitted to a daemon finishes,
    and its spectrum (and the engine's reference spectrum) is bit-identical to the one of the same campaign file
    run in the foreground by `aiida-irspec campaign run` (caching off: nothing is shared between the two)."""
    import ase.io
    from aiida import orm
    from aiida.engine import submit

    from aiida_irspec.cli import cli
    from aiida_irspec.data.frames import structure_from_atoms
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
    spec = tiny_campaign_spec(engine.full_label, predict.full_label)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))

    out = CliRunner().invoke(cli, ["-p", sqlite_zeromq_profile.name, "campaign", "run", str(path)])
    assert out.exit_code == 0, out.output
    from_yaml = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": spec["name"]}).one()[0]

    overrides = {key: value for key, value in spec.items() if key not in ("name", "protocol", "structure", "codes")}
    structure = structure_from_atoms(ase.io.read(WATER_DIMER))
    builder = CampaignWorkChain.get_builder_from_protocol(engine, predict, structure, protocol="fast",
                                                          overrides=overrides)
    builder.metadata.label = "from-python"
    with running_daemon(sqlite_zeromq_profile) as client:
        node = submit(builder)
        wait_until(lambda: node.is_terminated, 1200, interval=1.0)
        assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message, client.daemon_log_file)
    for name in ("spectrum", "reference_spectrum"):
        ours, theirs = node.outputs.spectrum[name], from_yaml.outputs.spectrum[name]
        assert ours.uuid != theirs.uuid
        expected = spectrum_arrays(theirs)
        got = spectrum_arrays(ours)
        assert got.keys() == expected.keys()
        for array in expected:
            np.testing.assert_array_equal(got[array], expected[array])
    assert "spec_file" not in node.inputs and from_yaml.inputs.spec_file["name"] == "tiny.yaml"


@pytest.mark.services
@pytest.mark.slow
def test_campaign_submit_runs_on_the_daemon(postgres_rabbitmq_profile, tmp_path):
    from aiida import orm

    from aiida_irspec.cli import cli

    profile = postgres_rabbitmq_profile
    engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_campaign_spec(engine.full_label, predict.full_label)))

    out = CliRunner().invoke(cli, ["-p", profile.name, "campaign", "submit", str(spec)])
    assert out.exit_code == 0, out.output
    pk = int(re.search(r"CampaignWorkChain<(\d+)>", out.output).group(1))
    node = orm.load_node(pk)
    assert node.label == "tiny-water-dimer" and not node.is_terminated  # waiting for a daemon

    with running_daemon(profile) as client:
        wait_until(lambda: node.is_terminated, 600, interval=1.0)
        assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message, client.daemon_log_file)
    spectrum = node.outputs.spectrum.spectrum
    assert spectrum.n_runs == 2 and spectrum.frequency_cm1.size > 0
    history = node.outputs.learning.history.get_dict()
    assert history["rows"][-1]["attempted"] == 7
    out = CliRunner().invoke(cli, ["-p", profile.name, "campaign", "status", str(pk)])
    assert out.exit_code == 0 and "7 done, 0 failed, 0 running" in out.output, out.output
