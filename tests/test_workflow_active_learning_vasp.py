"""irspec.active_learning with engine "vasp" through aiida-vasp's mock-vasp on the real ZrO2 DFPT set.

The pool is a TrajectoryData of 12 of the shared ZrO2 structures (96 atoms; each frame keeps its own cell,
as in an NpT run). The registry holds, for every pool frame, the INCAR / POSCAR / KPOINTS that our
VaspBornChargesWorkChain writes for it (dry runs) with that structure's real OUTCAR as the output, so every
reference job the loop launches runs aiida-vasp's real CalcJob and parser on a real VASP result.
"""

import numpy as np
import pytest
from vasp_mock import MAPPING, ZRO2_CONVERGED, zro2_born_charges_setup

pytestmark = pytest.mark.shared

MODEL_SETTINGS = {"descriptor": {"cutoff": 3.5, "n_radial": 3, "l_max": 1}, "baseline": "formal"}


@pytest.fixture
def zro2_vasp(aiida_profile_clean, aiida_localhost, tmp_path, zro2_dir):
    """Pool, mock-vasp code, stand-in POTCARs and a registry with one DFPT case per pool frame."""
    return zro2_born_charges_setup(aiida_localhost, zro2_dir, tmp_path, ZRO2_CONVERGED)


def test_active_learning_with_vasp_references(zro2_vasp, zro2_dir):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.io.vasp import read_born_charges
    from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain

    selection = {"strategy": "uncertainty", "initial": 3, "batch": 2, "budget": 7, "target_error": 1e-6,
                 "error_estimate": "holdout", "holdout": 2}
    born_inputs = {"engine": orm.Str("vasp"), "code": zro2_vasp["code"], "protocol": orm.Str("moderate"),
                   "options": orm.Dict(zro2_vasp["options"]),
                   "engine_inputs": {"potential_family": orm.Str(zro2_vasp["family"]),
                                     "potential_mapping": orm.Dict(MAPPING)}}
    results, node = run_get_node(ActiveLearningWorkChain, pool=zro2_vasp["pool"], selection=orm.Dict(selection),
                                 failures=orm.Dict({"max_concurrent": 4}), model=orm.Dict(MODEL_SETTINGS),
                                 born_charges=born_inputs)
    assert node.is_finished_ok, node.exit_message

    # every reference job is a VaspBornChargesWorkChain (under irspec.born_charges) that finished OK
    agnostic = [n for n in node.called if n.process_type == "aiida.workflows:irspec.born_charges"]
    vasp_jobs = [n for n in node.called_descendants if n.process_type == "aiida.workflows:irspec.vasp.born_charges"]
    assert len(agnostic) == len(vasp_jobs) == 7
    assert all(n.is_finished_ok for n in agnostic + vasp_jobs)

    # the history reports the fitted model's hold-out error
    history = results["history"].get_dict()
    assert history["stop_reason"] == "budget of reference jobs spent"
    assert [row["attempted"] for row in history["rows"]] == [5, 7]
    assert [row["training_set_size"] for row in history["rows"]] == [3, 5]
    last = history["rows"][-1]
    assert last["model_uuid"] == results["model"].uuid
    assert last["holdout_rmse"] == results["model"].born_charges_rmse == last["error"]
    assert 0.0 < last["holdout_rmse"] < 1.0  # |e|: the formal charges (+4, -2) are off by more than that

    # the Born charges in the provenance are the OUTCAR's, bit for bit, for the matching structure
    assert len(results["born_charges"]) == 7
    training_inputs = dict(results["model"].creator.inputs.born_charges)  # what the last fit used
    for key, born in results["born_charges"].items():
        number = zro2_vasp["numbers"][int(key.split("_")[1])]
        record = read_born_charges(zro2_dir / f"OUTCAR.{number}.gz")
        assert np.array_equal(born.born_charges, record.born_charges)
        assert np.array_equal(born.dielectric, record.dielectric)
        assert born.creator.caller.caller.caller.pk == node.pk  # born_charges_from_vasp <- vasp WC <- agnostic WC
        if key in training_inputs:
            assert training_inputs[key].pk == born.pk
    assert sorted(training_inputs) == sorted(f"frame_{f}" for row in history["rows"] for f in row["batch"])
