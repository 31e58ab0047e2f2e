"""`aiida-irspec campaign submit` on the production set-up: PostgreSQL + RabbitMQ profile, a real daemon."""

import re

import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import tiny_campaign_spec
from daemon_helpers import daemon_codes, daemon_computer, running_daemon, wait_until

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_campaign_submit_runs_on_the_daemon(postgres_rabbitmq_profile, tmp_path):
    from aiida import orm

    from aiida_irspec.cli import cli

    profile = postgres_rabbitmq_profile
    engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_campaign_spec(engine.full_label, predict.full_label)))

    out = CliRunner().invoke(cli, ["campaign", "submit", str(spec), "-p", profile.name])
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
    out = CliRunner().invoke(cli, ["campaign", "status", str(pk), "-p", profile.name])
    assert out.exit_code == 0 and "7 done, 0 failed, 0 running" in out.output, out.output
