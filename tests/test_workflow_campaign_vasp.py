"""A VASP campaign on mock-vasp whose sampling run is a real MLFF output layout.

The campaign (CampaignWorkChain.get_builder_from_protocol, engine "vasp") samples with the real outputs of a VASP
6.3.0 machine-learned force-field on-the-fly training run (80 atoms, NVT at 300 K, 1 fs: 20 DFT steps inside
<calculation> blocks, 80 ML steps as bare <structure> blocks outside them). The pool handed to active learning
must hold every stored step of that run, in order, 1 fs apart, with the DFT/ML origin of each. No real DFPT
output exists for this system, so the reference jobs of the learning stage (VaspBornChargesWorkChain on frames
of the pool) find no mock-vasp case, fail, and the campaign stops with its documented exit code for too many
failed references: the stages after sampling run as far as real outputs exist.
"""

import shutil

import numpy as np
import pytest
from vasp_mock import (MLFF_MAPPING, MLFF_TASK, case_from_builder, mlff_outputs, mlff_structure, mock_vasp_code,
                       registry_options, upload_standin_family)

pytestmark = pytest.mark.shared


@pytest.fixture
def campaign_env(aiida_profile_clean, aiida_localhost, aiida_code_installed, tmp_path):
    family = upload_standin_family(tmp_path / "potcars", sorted(set(MLFF_MAPPING.values())))
    registry = tmp_path / "registry"
    registry.mkdir()
    predict = aiida_code_installed(filepath_executable=shutil.which("aiida-irspec"), computer=aiida_localhost,
                                   default_calc_job_plugin="irspec.predict_pdot", label="irspec")
    return {"code": mock_vasp_code(aiida_localhost), "predict": predict, "family": family, "registry": registry}


def sampling_engine_builder(campaign_builder, engine_inputs):
    """The VASP MD builder that the campaign's sampling stage (irspec.md) will make: the same call as
    MdWorkChain.run_engine, from the campaign builder's sampling namespace (ensemble NVT and the campaign's
    temperature, as CampaignWorkChain.run_sampling sets them)."""
    from aiida_irspec.workflows.vasp.md import VaspMdWorkChain

    sampling = campaign_builder.sampling
    task = {"ensemble": "nvt", "temperature": campaign_builder.temperature.value, "steps": sampling.steps.value,
            "stride": sampling.stride.value}
    for name in ("timestep", "seed"):
        if name in sampling:
            task[name] = sampling[name].value
    return VaspMdWorkChain.get_builder_from_protocol(
        sampling.code, campaign_builder.structure,
        protocol=sampling.protocol.value if "protocol" in sampling else None,
        overrides=sampling.engine_overrides.get_dict() if "engine_overrides" in sampling else None,
        options=sampling.options.get_dict() if "options" in sampling else None, **task, **engine_inputs)


def test_vasp_campaign_pool_holds_every_mlff_step(campaign_env, shared_data):
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.campaign import CampaignWorkChain
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    structure = mlff_structure(shared_data)
    engine_inputs = {"potential_family": campaign_env["family"], "potential_mapping": MLFF_MAPPING}
    overrides = {"temperature": MLFF_TASK["temperature"], "equilibration": 10,
                 "sampling": {"steps": MLFF_TASK["steps"], "stride": 1, "timestep": MLFF_TASK["timestep"]},
                 "learning": {"selection": {"initial": 2, "batch": 1, "budget": 3, "holdout": 0,
                                            "error_estimate": "uncertainty"},
                              "failures": {"max_concurrent": 2, "max_failed_fraction": 0.0}}}
    builder = CampaignWorkChain.get_builder_from_protocol(
        campaign_env["code"], campaign_env["predict"], structure, protocol="fast", overrides=overrides,
        engine="vasp", options=registry_options(campaign_env["registry"]), **engine_inputs)
    case_from_builder(sampling_engine_builder(builder, engine_inputs), campaign_env["registry"] / "sampling",
                      mlff_outputs(shared_data))

    _, node = run_get_node(builder)

    pool = node.outputs.sampling.trajectory  # the sampling stage finished: its trajectory is the pool
    assert pool.numsteps == 100 and pool.get_stepids().tolist() == list(range(1, 101))
    np.testing.assert_array_equal(pool.get_array("times"), np.arange(100.0))
    origin = pool.get_array("origin")
    assert (origin == "dft").sum() == 20 and (origin == "ml").sum() == 80
    assert pool.base.attributes.get("source")["layout"].startswith("<calculation> blocks (ab-initio steps) and bare")

    (learning,) = [n for n in node.called if n.process_label == "ActiveLearningWorkChain"]
    assert learning.inputs.pool.uuid == pool.uuid
    assert learning.inputs.candidates.get_list() == list(range(10, 100))  # after the 10 equilibration steps
    references = [n for n in learning.called_descendants if n.process_class is VaspBornChargesWorkChain]
    assert references, "no reference job was launched"
    positions = pool.get_positions()
    for reference in references:  # each a frame of the pool (up to lattice vectors)
        frame = reference.inputs.structure.get_ase()
        delta = (positions - frame.positions[None]) @ np.linalg.inv(frame.cell.array)
        assert np.any(np.all(np.abs(delta - np.round(delta)) < 1e-6, axis=(1, 2)))
        assert not reference.is_finished_ok  # no DFPT output exists for these structures
    assert node.exit_status == CampaignWorkChain.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.status, (
        node.exit_status, node.exit_message)
