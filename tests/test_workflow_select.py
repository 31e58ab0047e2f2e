"""irspec.select on a real tblite NVT pool of the water dimer: farthest point and random, with exclusions."""

import numpy as np
import pytest

from campaign_helpers import trajectory_data, water_dimer_md


@pytest.fixture
def pool(aiida_profile):
    return trajectory_data(water_dimer_md()).store()


def run_select(pool, **inputs):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.select import SelectWorkChain

    converted = {key: (orm.List(value) if isinstance(value, list) else
                       orm.Str(value) if isinstance(value, str) else orm.Int(value)) for key, value in inputs.items()}
    return run_get_node(SelectWorkChain, pool=pool, **converted)


def test_farthest_point_matches_the_core_and_respects_exclusions(pool):
    from aiida_irspec.campaign.selection import farthest_point, standardise
    from aiida_irspec.data.frames import trajectory_frames
    from aiida_irspec.model.descriptors import DescriptorSettings, structure_descriptors

    candidates = list(range(10, pool.numsteps))
    exclude = [12, 30]
    results, node = run_select(pool, number=4, strategy="farthest_point", candidates=candidates, exclude=exclude)
    assert node.is_finished_ok
    chosen = results["indices"].get_list()
    assert len(set(chosen)) == 4 and not set(chosen) & set(exclude) and min(chosen) >= 10

    universe = sorted(set(candidates) | set(exclude))
    descriptors = structure_descriptors(trajectory_frames(pool, universe), DescriptorSettings())
    picks = farthest_point(standardise(descriptors), 4, selected=[universe.index(e) for e in exclude])
    expected = [universe[k] for k in picks]
    assert chosen == expected

    for frame in chosen:
        structure = results["structures"][f"frame_{frame}"]
        assert np.allclose(structure.get_ase().positions, pool.get_positions()[frame])
        assert not any(structure.pbc)
    # provenance: the structures were created by the selection calcfunction, which used the pool
    creator = results["structures"][f"frame_{chosen[0]}"].creator
    assert creator.process_type.endswith("select_configurations") and creator.label == "select 4 by farthest_point"
    assert pool.uuid in {n.uuid for n in creator.base.links.get_incoming().all_nodes()}


def test_random_is_reproducible_and_differs_by_seed(pool):
    first = run_select(pool, number=5, strategy="random", seed=7)[0]["indices"].get_list()
    again = run_select(pool, number=5, strategy="random", seed=7)[0]["indices"].get_list()
    other = run_select(pool, number=5, strategy="random", seed=8)[0]["indices"].get_list()
    assert first == again and first != other


def test_pool_too_small_and_bad_inputs(pool):
    results, node = run_select(pool, number=3, candidates=[1, 2, 3], exclude=[2])
    assert node.exit_status == 300 and "fewer than the 3" in node.exit_message
    with pytest.raises(ValueError, match="needs a model"):
        run_select(pool, number=2, strategy="uncertainty")
    with pytest.raises(ValueError, match="unknown"):
        run_select(pool, number=2, strategy="best")
