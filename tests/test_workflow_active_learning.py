"""irspec.active_learning end to end on tblite (water dimer): the loop, its history, failure tolerance."""

import shutil

import numpy as np
import pytest

from campaign_helpers import SMALL_DESCRIPTOR, trajectory_data, water_dimer_md

MODEL_SETTINGS = {"descriptor": SMALL_DESCRIPTOR, "baseline": "zero"}


@pytest.fixture
def tblite_code(aiida_localhost, aiida_code_installed):
    return aiida_code_installed(filepath_executable=shutil.which("aiida-irspec"), computer=aiida_localhost,
                                default_calc_job_plugin="irspec.tblite.born_charges", label="tblite")


def run_learning(code, pool, settings, **extra):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain

    from aiida_irspec.campaign.settings import FailureSettings

    settings = dict(settings)
    failures = {key: settings.pop(key) for key in list(settings) if key in FailureSettings.defaults()}
    return run_get_node(ActiveLearningWorkChain, pool=pool, selection=orm.Dict(settings),
                        failures=orm.Dict(failures), model=orm.Dict(MODEL_SETTINGS),
                        born_charges={"engine": orm.Str("tblite"), "code": code, "protocol": orm.Str("fast")},
                        **extra)


@pytest.mark.slow
def test_loop_until_budget_with_history(tblite_code):
    from aiida.orm import QueryBuilder, WorkflowNode

    from aiida_irspec.workflows.born_charges import BornChargesWorkChain

    pool = trajectory_data(water_dimer_md()).store()
    settings = {"strategy": "uncertainty", "initial": 3, "batch": 2, "budget": 9, "target_error": 1e-6,
                "error_estimate": "both", "holdout": 2, "max_concurrent": 2}
    results, node = run_learning(tblite_code, pool, settings)
    assert node.is_finished_ok, node.exit_message
    history = results["history"].get_dict()
    rows = history["rows"]
    assert [row["attempted"] for row in rows] == [5, 7, 9]
    assert [row["training_set_size"] for row in rows] == [3, 5, 7]
    assert history["stop_reason"] == "budget of reference jobs spent" and not history["converged"]
    for row in rows:
        assert row["error"] == max(row["holdout_rmse"], row["uncertainty_rms"])
    assert len(set(history["holdout"])) == 2
    chosen = [frame for row in rows for frame in row["batch"]]
    assert len(set(chosen)) == 7 and not set(chosen) & set(history["holdout"])
    assert results["model"].training_set_size == 7 and results["model"].uuid == rows[-1]["model_uuid"]
    assert len(results["born_charges"]) == 9
    # the Born charges are tblite's for the chosen frames
    from aiida_irspec.engines.tblite import born_charges

    frame = chosen[0]
    atoms = results["structures"][f"frame_{frame}"].get_ase()
    assert np.allclose(results["born_charges"][f"frame_{frame}"].born_charges, born_charges(atoms, displacement=2e-3,
                                                                                           accuracy=1.0), atol=1e-6)
    # never more than max_concurrent reference jobs launched by one step
    children = [c for c in node.called if c.process_class is BornChargesWorkChain]
    assert len(children) == 9
    assert QueryBuilder().append(WorkflowNode, filters={"id": node.pk}).count() == 1


def test_failed_references_are_counted_and_stop_the_loop(tblite_code):
    """Frame 1 of the pool has an H atom on top of its O: tblite fails on it (exit 322; a deterministic failure, not
    run again). With at most 20% failures allowed, 1 failure in 4 stops the loop with 410, keeping the three
    references. (A frame tblite cannot take at all, e.g. a periodic one, is refused when its job is submitted.)"""
    from aiida import orm

    result = water_dimer_md()
    pool = trajectory_data(result)
    positions = result.positions.copy()
    positions[1, 1] = positions[1, 0]
    pool.set_trajectory(pool.symbols, positions, stepids=np.arange(len(result.times)), cells=result.cells,
                        times=result.times, velocities=result.velocities, pbc=[bool(p) for p in result.pbc])
    pool.store()
    settings = {"initial": 4, "batch": 2, "budget": 6, "error_estimate": "uncertainty", "holdout": 0,
                "max_failed_fraction": 0.2, "max_concurrent": 4}
    results, node = run_learning(tblite_code, pool, settings, candidates=orm.List([0, 1, 2, 3]))
    assert node.exit_status == 410 and "1 of 4 reference jobs failed" in node.exit_message
    assert sorted(results["born_charges"]) == ["frame_0", "frame_2", "frame_3"]
    assert "model" not in results
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any("for frame 1 failed" in message for message in reports)
