"""Caching keyed to the code: every calcfunction hashes ``numerics_version``, every CalcJob and parser of the
plugin has a ``CACHE_VERSION``; a rerun with the same version comes from the cache, one with another version
does not (a calcfunction and a CalcJob, run for real)."""

import importlib
import importlib.metadata
import inspect
import pathlib
import pkgutil
import shutil
import sys

import numpy as np
import pytest

import aiida_irspec
from aiida_irspec import NUMERICS_VERSION

PLUGIN_PATTERN = "aiida.calculations:irspec.*"


def plugin_entry_points(group):
    return [ep for ep in importlib.metadata.entry_points(group=group) if ep.name.startswith("irspec.")]


def test_every_calcfunction_hashes_the_numerics_version():
    """Every calcfunction of every module of the package (entry point or not) has the input."""
    from aiida.orm import CalcFunctionNode

    from aiida_irspec.calculations.versioned import VERSION_INPUT

    functions = {}
    for module in pkgutil.walk_packages(aiida_irspec.__path__, "aiida_irspec."):
        for name, value in vars(importlib.import_module(module.name)).items():
            if getattr(value, "is_process_function", False) and value.node_class is CalcFunctionNode:
                functions[f"{value.process_class._func.__module__}.{name}"] = value
    entry_points = {ep.value.replace(":", ".") for ep in plugin_entry_points("aiida.calculations")}
    assert entry_points - set(functions) == {ep for ep in entry_points if "Calculation" in ep}
    assert len(functions) >= 11
    missing = [name for name, function in functions.items()
               if VERSION_INPUT not in function.process_class.spec().inputs]
    assert not missing


def test_every_calcjob_and_parser_has_a_cache_version():
    from aiida.engine import CalcJob

    classes = [ep.load() for group in ("aiida.calculations", "aiida.parsers") for ep in plugin_entry_points(group)]
    versioned = [cls for cls in classes if inspect.isclass(cls)]
    assert len(versioned) >= 7
    assert all(isinstance(cls.CACHE_VERSION, int) for cls in versioned), \
        [cls.__name__ for cls in versioned if cls.CACHE_VERSION is None]
    # the jobs and parsers that run the package's own code move with the numerics; VASP keeps its own
    own = [cls for cls in versioned if not (issubclass(cls, CalcJob) and "vasp" in cls.__module__)]
    assert {cls.CACHE_VERSION for cls in own} == {NUMERICS_VERSION}


def series_node(seed):
    from aiida import orm

    rng = np.random.default_rng(seed)
    times = np.arange(1000) * 0.5
    node = orm.ArrayData()
    node.set_array("times", times)
    node.set_array("pdot", 0.01 * np.cos(0.3 * times[:, None] + rng.uniform(0, 6, 3))
                   + 1e-4 * rng.normal(size=(1000, 3)))
    return node


def test_calcfunction_rerun_cached_only_with_the_same_numerics_version(aiida_profile_clean, monkeypatch):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching

    from aiida_irspec.calculations import aggregate
    from aiida_irspec.calculations.versioned import VERSION_INPUT

    settings = {"temperature": 300.0, "molecules": 1, "window": "gaussian", "width_cm1": 50.0,
                "quantum_correction": "none", "bootstrap": 0}

    def run():
        return run_get_node(aggregate.aggregate_spectra, settings=orm.Dict(settings),
                            run_0=series_node(0), run_1=series_node(1))

    with enable_caching(identifier=PLUGIN_PATTERN):
        first, first_node = run()
        again, again_node = run()
        monkeypatch.setattr(aiida_irspec, "NUMERICS_VERSION", NUMERICS_VERSION + 1)
        bumped, bumped_node = run()

    assert first_node.is_finished_ok and not first_node.base.caching.is_created_from_cache
    assert first_node.inputs[VERSION_INPUT].value == NUMERICS_VERSION
    assert VERSION_INPUT in first_node.base.caching.get_objects_to_hash()["inputs"]
    assert again_node.base.caching.get_cache_source() == first_node.uuid
    assert np.array_equal(again.mean, first.mean)
    assert bumped_node.inputs[VERSION_INPUT].value == NUMERICS_VERSION + 1
    assert not bumped_node.base.caching.is_created_from_cache
    assert bumped_node.base.caching.get_hash() != first_node.base.caching.get_hash()
    assert np.array_equal(bumped.mean, first.mean)  # recomputed by the same code
    # otherwise the node of a plain calcfunction: its name, module, own source file (hashed) and lines
    assert first_node.function_name == "aggregate_spectra"
    assert first_node.function_namespace == "aiida_irspec.calculations.aggregate"
    assert first_node.get_source_code_file() == pathlib.Path(aggregate.__file__).read_text()
    assert first_node.get_source_code_function().splitlines()[:2] == ["@versioned_calcfunction",
                                                                        "def aggregate_spectra(settings: orm.Dict, "
                                                                        "**runs: orm.ArrayData) -> IRSpectrumData:"]
    assert first_node.process_type == "aiida.calculations:irspec.aggregate_spectra"


def test_calcfunction_without_caching_and_an_explicit_version(aiida_profile_clean):
    """Without caching nothing is reused; a version given explicitly is stored as given."""
    from aiida import orm

    from aiida_irspec.calculations.snapshots import trajectory_polarization

    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=["O", "H"], positions=np.zeros((3, 2, 3)), times=np.arange(3.0))
    trajectory.set_array("dipoles", np.ones((3, 3)))
    first = trajectory_polarization.run_get_node(trajectory)[1]
    second = trajectory_polarization.run_get_node(trajectory, numerics_version=orm.Int(7))[1]
    assert not first.base.caching.is_created_from_cache and not second.base.caching.is_created_from_cache
    assert (first.inputs.numerics_version.value, second.inputs.numerics_version.value) == (NUMERICS_VERSION, 7)
    assert np.array_equal(second.outputs.result.get_array("polarization"), np.ones((3, 3)))


@pytest.fixture
def tblite_code(aiida_code_installed, aiida_localhost):
    """The ``aiida-irspec`` executable of this environment as an InstalledCode on localhost (core.direct)."""
    pytest.importorskip("tblite")
    executable = shutil.which("aiida-irspec", path=str(pathlib.Path(sys.executable).parent))
    if executable is None:
        pytest.skip("the aiida-irspec executable is not next to the Python interpreter")
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    return aiida_code_installed(default_calc_job_plugin="irspec.tblite.born_charges", computer=aiida_localhost,
                                filepath_executable=executable)


def test_calcjob_rerun_cached_only_with_the_same_cache_versions(aiida_profile_clean, tblite_code, monkeypatch):
    """A tblite Born-charge job of a water molecule: run, rerun (from the cache), rerun with the CalcJob's
    version bumped and with the parser's version bumped (both run again)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching
    from ase.build import molecule

    from aiida_irspec.calculations.tblite import TbliteBornChargesCalculation
    from aiida_irspec.parsers.tblite import TbliteBornChargesParser

    structure = orm.StructureData(ase=molecule("H2O")).store()

    def run():
        outputs, node = run_get_node(TbliteBornChargesCalculation, code=tblite_code, structure=structure,
                                     parameters=orm.Dict({"displacement": 2e-3}),
                                     metadata={"options": {"max_wallclock_seconds": 600}})
        assert node.is_finished_ok, node.exit_message
        return outputs["born_charges"].born_charges, node

    with enable_caching(identifier=PLUGIN_PATTERN):
        first, first_node = run()
        again, again_node = run()
        monkeypatch.setattr(TbliteBornChargesCalculation, "CACHE_VERSION", NUMERICS_VERSION + 1)
        job_bumped, job_bumped_node = run()
        monkeypatch.setattr(TbliteBornChargesParser, "CACHE_VERSION", NUMERICS_VERSION + 1)
        parser_bumped, parser_bumped_node = run()

    assert first_node.base.attributes.get("cache_version") == {"calc_job": NUMERICS_VERSION,
                                                               "parser": NUMERICS_VERSION}
    assert not first_node.base.caching.is_created_from_cache
    assert again_node.base.caching.get_cache_source() == first_node.uuid
    assert job_bumped_node.base.attributes.get("cache_version")["calc_job"] == NUMERICS_VERSION + 1
    assert parser_bumped_node.base.attributes.get("cache_version") == {"calc_job": NUMERICS_VERSION + 1,
                                                                       "parser": NUMERICS_VERSION + 1}
    hashes = {node.base.caching.get_hash() for node in (first_node, job_bumped_node, parser_bumped_node)}
    assert len(hashes) == 3
    assert not job_bumped_node.base.caching.is_created_from_cache
    assert not parser_bumped_node.base.caching.is_created_from_cache
    for charges in (again, job_bumped, parser_bumped):  # one OpenMP thread: every run gives the same bits
        assert np.array_equal(charges, first)


def test_a_crashed_job_is_no_cache_source(aiida_profile_clean, aiida_code_installed, aiida_localhost):
    """A job whose command wrote nothing (here /bin/true: exit 0, no summary) fails with 310, and a rerun with
    caching on runs again instead of taking the failure from the cache (what a restart after a crash needs)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching
    from ase.build import molecule

    from aiida_irspec.calculations.tblite import TbliteBornChargesCalculation

    aiida_localhost.set_minimum_job_poll_interval(0.0)
    code = aiida_code_installed(default_calc_job_plugin="irspec.tblite.born_charges", computer=aiida_localhost,
                                filepath_executable="/bin/true")
    structure = orm.StructureData(ase=molecule("H2O")).store()
    with enable_caching(identifier=PLUGIN_PATTERN):
        nodes = [run_get_node(TbliteBornChargesCalculation, code=code, structure=structure)[1] for _ in range(2)]
    assert [node.exit_status for node in nodes] == [310, 310]
    assert not nodes[0].base.caching.is_valid_cache
    assert not nodes[1].base.caching.is_created_from_cache


def test_calcfunctions_run_on_one_thread_whatever_the_caller_set(aiida_profile):
    """The results of a calcfunction do not depend on the thread variables: it runs on one BLAS and one OpenMP
    thread (here the caller sets two), and the caller's setting is back afterwards."""
    from aiida import orm
    from threadpoolctl import threadpool_info, threadpool_limits

    from aiida_irspec.calculations.versioned import versioned_calcfunction

    def counts():
        return sorted({(pool["user_api"], pool["num_threads"]) for pool in threadpool_info()})

    @versioned_calcfunction
    def thread_counts() -> orm.List:
        return orm.List(counts())

    with threadpool_limits(limits=2):
        inside = thread_counts().get_list()
        outside = counts()
    assert inside and {count for _, count in inside} == {1}
    assert {count for _, count in outside} == {2}
