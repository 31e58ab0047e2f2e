"""Reproducibility: the same campaign spec and seeds give a bit-identical spectrum, and a finished campaign
exported with ``verdi archive create`` and imported into a fresh profile reproduces its spectrum from the
stored nodes, bit for bit, and ``aiida-irspec campaign report`` works on it there."""

import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import tiny_campaign_spec
from daemon_helpers import assert_same_spectrum, daemon_codes, daemon_computer, spectrum_arrays, verdi

pytestmark = pytest.mark.reliability


@pytest.mark.timeout(900)
def test_rerun_and_archive_reproduce_the_spectrum(aiida_config_tmp, aiida_profile_factory, tmp_path):
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.engine import run_get_node
    from aiida.manage import get_manager

    from aiida_irspec.calculations.aggregate import aggregate_spectra
    from aiida_irspec.cli import cli
    from aiida_irspec.workflows.campaign import builder_from_file

    archive = tmp_path / "campaign.aiida"
    try:
        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos", name="source") as source:
            engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
            path = tmp_path / "tiny.yaml"
            path.write_text(yaml.safe_dump(tiny_campaign_spec(engine.full_label, predict.full_label)))
            first, second = (run_get_node(builder_from_file(path))[1] for _ in range(2))
            assert first.is_finished_ok and second.is_finished_ok, (first.exit_message, second.exit_message)
            # two independent runs: no node is shared (caching is off), yet the spectra are the same bits
            assert first.outputs.spectrum.spectrum.uuid != second.outputs.spectrum.spectrum.uuid
            assert_same_spectrum(second.outputs.spectrum.spectrum, first.outputs.spectrum.spectrum)
            assert_same_spectrum(second.outputs.spectrum.reference_spectrum, first.outputs.spectrum.reference_spectrum)
            expected, uuid = spectrum_arrays(first.outputs.spectrum.spectrum), first.uuid
            verdi(source, "archive", "create", "-N", str(first.pk), "--", str(archive))

        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos", name="fresh") as fresh:
            assert orm.QueryBuilder().append(orm.Node).count() == 0
            verdi(fresh, "archive", "import", "--", str(archive))
            node = orm.load_node(uuid)
            assert_same_spectrum(node.outputs.spectrum.spectrum, expected)
            # recompute it from the stored inputs of the aggregation: the same settings and dP/dt series
            aggregation = node.outputs.spectrum.spectrum.creator
            inputs = {link.link_label: link.node
                      for link in aggregation.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
            recomputed = aggregate_spectra(**inputs)
            assert recomputed.uuid != node.outputs.spectrum.spectrum.uuid
            assert_same_spectrum(recomputed, expected)

            out = CliRunner().invoke(cli, ["-p", fresh.name, "campaign", "report", str(node.pk),
                                           "-o", str(tmp_path / "report")])
            assert out.exit_code == 0, out.output
            assert "budget of reference jobs spent" in out.output and "stretch" in out.output
            for name in ("learning.png", "spectrum.png", "spectrum.csv"):
                assert (tmp_path / "report" / name).stat().st_size > 500
    finally:
        get_manager().reset_profile()
