"""The tblite CalcJobs, their parsers and WorkChains, and the engine-agnostic WorkChains, run for real on a localhost
Computer. (Restarts of the tblite WorkChains: test_tblite_workchains.py.)"""

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("tblite")

EXECUTABLE = shutil.which("aiida-irspec", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
    "aiida-irspec")


@pytest.fixture
def code(aiida_code_installed, aiida_localhost):
    """An InstalledCode of the ``aiida-irspec`` executable of this environment on localhost (core.direct)."""
    if EXECUTABLE is None:
        pytest.skip("the aiida-irspec executable is not on the PATH")
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    return aiida_code_installed(default_calc_job_plugin="irspec.tblite.born_charges", computer=aiida_localhost,
                                filepath_executable=EXECUTABLE)


def structure_of(atoms):
    from aiida import orm

    return orm.StructureData(ase=atoms)


@pytest.fixture
def water_dimer():
    from ase.collections import s22

    return s22["Water_dimer"]


def options():
    return {"resources": {"num_machines": 1}, "max_wallclock_seconds": 600, "withmpi": False,
            "environment_variables": {"OMP_NUM_THREADS": "1"}}


# ---- CalcJobs -----------------------------------------------------------------------------------------

def test_md_nvt_workchain_then_nve_workchain_from_its_last_frame(code, water_dimer):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.engines import md, tblite

    builder = WorkflowFactory("irspec.tblite.md").get_builder_from_protocol(
        code, structure_of(water_dimer), protocol="moderate", options=options(), ensemble="nvt", temperature=300.0,
        steps=200, stride=10, seed=5, overrides={"parameters": {"record_dipoles": True}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    trajectory = results["trajectory"]
    assert trajectory.numsteps == 21 and trajectory.get_array("positions").shape == (21, 6, 3)
    np.testing.assert_allclose(trajectory.get_array("times"), np.arange(21) * 5.0)
    assert set(trajectory.get_arraynames()) >= {"velocities", "potential_energy", "kinetic_energy", "temperature",
                                                "dipoles", "cells"}
    assert trajectory.base.attributes.get("units")["velocities"] == "Angstrom/fs"
    assert node.inputs.parameters["timestep"] == 0.5  # the moderate protocol
    assert [job.process_type for job in node.called] == ["aiida.calculations:irspec.tblite.md"]
    # the same run in plain Python gives the same numbers (seeded; up to the extxyz round trip of the input)
    direct = md.run_md(water_dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=200,
                       timestep=0.5, stride=10, seed=5)
    np.testing.assert_allclose(trajectory.get_array("positions"), direct.positions, atol=1e-6)
    final_velocities = results["final_velocities"].get_array("velocities")
    np.testing.assert_array_equal(final_velocities, trajectory.get_array("velocities")[-1])
    np.testing.assert_allclose(results["final_structure"].get_ase().positions,
                               trajectory.get_array("positions")[-1], atol=1e-12)

    nve, node = run_get_node(WorkflowFactory("irspec.md"), structure=results["final_structure"],
                             engine=orm.Str("tblite"), code=code, options=orm.Dict(options()),
                             ensemble=orm.Str("nve"), temperature=orm.Float(300.0), steps=orm.Int(100),
                             stride=orm.Int(10), timestep=orm.Float(0.25),
                             initial_velocities=results["final_velocities"])
    assert node.is_finished_ok, node.exit_message
    child = node.called[0]
    assert child.process_type == "aiida.workflows:irspec.tblite.md"
    job = child.called[0]
    assert job.process_type == "aiida.calculations:irspec.tblite.md"
    assert job.inputs.parameters["timestep"] == 0.25 and job.inputs.parameters["ensemble"] == "nve"
    assert nve["trajectory"].numsteps == 11 and job.outputs.misc["drift_too_large"] is False
    np.testing.assert_allclose(nve["trajectory"].get_array("positions")[0], trajectory.get_array("positions")[-1],
                               atol=1e-6)
    momentum = np.average(final_velocities, axis=0, weights=direct.masses)
    np.testing.assert_allclose(nve["trajectory"].get_array("velocities")[0], final_velocities - momentum, atol=1e-9)
    assert set(nve) == {"trajectory", "final_structure", "final_velocities", "remote_folder"}
    assert nve["remote_folder"].pk == job.outputs.remote_folder.pk


def test_md_energy_drift_exit_code_keeps_outputs(code, water_dimer):
    """NVE at 2 fs drifts: the job ends with 323 and its trajectory; the WorkChain passes both on, no rerun."""
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory("irspec.tblite.md").get_builder_from_protocol(
        code, structure_of(water_dimer), options=options(), ensemble="nve", temperature=300.0, steps=100,
        timestep=2.0, seed=2)
    results, node = run_get_node(builder)
    assert node.exit_status == 323 and "time step" in node.exit_message
    assert [job.exit_status for job in node.called] == [323]
    assert results["trajectory"].numsteps == 101 and results["misc"]["drift_too_large"]
    assert results["trajectory"].pk == node.called[0].outputs.trajectory.pk


def test_bad_inputs_are_refused_before_running(code, water_dimer):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.exceptions import InputError

    workchain = WorkflowFactory("irspec.tblite.md")
    with pytest.raises(InputError, match="parameters.*unknown setting 'thermostat'"):
        workchain.get_builder_from_protocol(code, structure_of(water_dimer),
                                            overrides={"parameters": {"thermostat": "nose"}})
    with pytest.raises(InputError, match="unknown input 'timestep'"):
        workchain.get_builder_from_protocol(code, structure_of(water_dimer), overrides={"timestep": 1.0})
    with pytest.raises(InputError, match="protocol"):
        workchain.get_builder_from_protocol(code, structure_of(water_dimer), protocol="sloppy")
    velocities = orm.ArrayData()
    velocities.set_array("velocities", np.zeros((2, 3)))
    builder = workchain.get_builder_from_protocol(code, structure_of(water_dimer), ensemble="nve",
                                                  initial_velocities=velocities, options=options())
    stored = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match="velocities must have shape"):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.Node).count() == stored  # refused before any node was stored


# ---- parsers on broken retrieved folders ---------------------------------------------------------------

def parse(entry_point, files, structure, exit_status=None):
    """Run a tblite parser on a calculation node whose retrieved folder holds ``files`` (name -> bytes)."""
    import io

    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.plugins import ParserFactory

    node = orm.CalcJobNode(process_type=f"aiida.calculations:{entry_point}")
    node.base.links.add_incoming(structure, link_type=LinkType.INPUT_CALC, link_label="structure")
    node.set_option("resources", {"num_machines": 1})
    node.store()
    if exit_status is not None:
        node.set_exit_status(exit_status)
    retrieved = orm.FolderData()
    for name, content in files.items():
        retrieved.base.repository.put_object_from_filelike(io.BytesIO(content), name)
    retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
    retrieved.store()
    return ParserFactory(entry_point)(node).parse()


def test_parser_exit_codes_on_missing_and_corrupt_files(aiida_profile_clean, water_dimer):
    from aiida.engine import CalcJob

    structure = structure_of(water_dimer).store()
    ok = json.dumps({"status": "ok", "error": None, "settings": {}}).encode()
    assert parse("irspec.tblite.born_charges", {}, structure).status == 310
    assert parse("irspec.tblite.born_charges", {"summary.json": b"{not json"}, structure).status == 311
    assert parse("irspec.tblite.born_charges", {"summary.json": ok}, structure).status == 312
    corrupt = parse("irspec.tblite.md", {"summary.json": ok, "trajectory.npz": b"PK\x03\x04 truncated"}, structure)
    assert corrupt.status == 313
    buffer = __import__("io").BytesIO()
    np.savez(buffer, born_charges=np.zeros((5, 3, 3)))
    wrong_shape = parse("irspec.tblite.born_charges", {"summary.json": ok, "born_charges.npz": buffer.getvalue()},
                        structure)
    assert wrong_shape.status == 313 and "shape" in wrong_shape.message
    # a scheduler exit code (here: out of wall time) is kept, not replaced by "missing summary"
    walltime = CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    assert parse("irspec.tblite.md", {}, structure, exit_status=walltime).status == walltime


# ---- engine-agnostic WorkChains --------------------------------------------------------------------------

def test_born_charges_workchain_with_tblite(code, water_dimer):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.engines import tblite

    results, node = run_get_node(WorkflowFactory("irspec.born_charges"), structure=structure_of(water_dimer),
                                 engine=orm.Str("tblite"), code=code, protocol=orm.Str("fast"),
                                 options=orm.Dict(options()))
    assert node.is_finished_ok, node.exit_message
    born = results["born_charges"]
    assert born.sum_rule_max < 1e-3 and born.born_charges.shape == (6, 3, 3)
    assert node.called[0].process_type == "aiida.workflows:irspec.tblite.born_charges"
    child = node.called[0].called[0]
    assert child.process_type == "aiida.calculations:irspec.tblite.born_charges"
    assert child.inputs.parameters["displacement"] == 2e-3  # the fast protocol
    assert born.symbols == water_dimer.get_chemical_symbols() and born.dielectric is None
    assert born.source["engine"] == "tblite" and born.source["displacement"] == 2e-3
    np.testing.assert_allclose(born.born_charges, tblite.born_charges(water_dimer, displacement=2e-3,
                                                                      accuracy=child.inputs.parameters["accuracy"]),
                               atol=1e-9)
    assert child.outputs.misc["status"] == "ok"


def test_inputs_an_engine_cannot_take_are_refused_at_submission(code, water_dimer):
    """A periodic cell for tblite, engine_inputs tblite does not take, an unknown engine, a tblite code for VASP:
    ValueError with one line when the WorkChain is launched, before any node is stored. The CalcJob on its own
    still refuses a periodic cell when it runs (321)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory, WorkflowFactory

    crystal = water_dimer.copy()
    crystal.cell, crystal.pbc = [10.0, 10.0, 10.0], True
    born_charges = WorkflowFactory("irspec.born_charges")
    stored = orm.QueryBuilder().append(orm.Node).count()
    refused = {
        "tblite takes molecules and clusters, not periodic cells": dict(structure=structure_of(crystal)),
        "takes no engine_inputs kpoints_distance": dict(engine_inputs={"kpoints_distance": orm.Float(0.2)}),
        "unknown engine 'cp2k'": dict(engine=orm.Str("cp2k")),
        "is a tblite code .*not a vasp one": dict(engine=orm.Str("vasp")),
        "tblite engine has no protocol 'sloppy'": dict(protocol=orm.Str("sloppy")),
    }
    for message, inputs in refused.items():
        inputs = {"structure": structure_of(water_dimer), "engine": orm.Str("tblite"), "code": code, **inputs}
        with pytest.raises(ValueError, match=message) as error:
            run_get_node(born_charges, **inputs)
        assert "Traceback" not in str(error.value)
    with pytest.raises(ValueError, match="not periodic cells"):
        run_get_node(WorkflowFactory("irspec.tblite.born_charges"), structure=structure_of(crystal), code=code)
    assert orm.QueryBuilder().append(orm.Node).count() == stored  # refused before any node was stored

    builder = CalculationFactory("irspec.tblite.born_charges").get_builder()
    builder.update(code=code, structure=structure_of(crystal), metadata={"options": options()})
    results, node = run_get_node(builder)
    assert node.exit_status == 321 and "periodic" in node.exit_message and "born_charges" not in results


def test_workchain_dispatches_to_vasp(code):
    """The VASP processes are reached through the registry (their runs: test_vasp_workchains.py)."""
    from aiida_irspec.workflows.engines import ENGINES

    for task in ("born_charges", "md"):
        assert ENGINES["vasp"].process(task).__name__.startswith("Vasp")
        assert ENGINES["tblite"].process(task).__name__.startswith("Tblite")
    assert set(ENGINES) == {"tblite", "vasp"}


# ---- through a real daemon (PostgreSQL + RabbitMQ profile) ---------------------------------------------------

@pytest.mark.services
@pytest.mark.slow
def test_md_workchain_through_the_daemon(postgres_rabbitmq_profile, water_dimer, tmp_path):
    """Submit ``irspec.md`` (tblite NVT) to a daemon and check that it finishes with its outputs."""
    from aiida import orm
    from aiida.engine import submit
    from aiida.plugins import WorkflowFactory

    from daemon_helpers import running_daemon, wait_until

    if EXECUTABLE is None:
        pytest.skip("the aiida-irspec executable is not on the PATH")
    computer = orm.Computer(label="localhost-tblite", hostname="localhost", transport_type="core.local",
                            scheduler_type="core.direct", workdir=str(tmp_path / "work")).store()
    computer.configure()
    computer.set_minimum_job_poll_interval(0.5)
    code = orm.InstalledCode(computer=computer, filepath_executable=EXECUTABLE,
                             default_calc_job_plugin="irspec.tblite.md").store()
    with running_daemon(postgres_rabbitmq_profile) as client:
        node = submit(WorkflowFactory("irspec.md"), structure=structure_of(water_dimer), engine=orm.Str("tblite"),
                      code=code, options=orm.Dict(options()), temperature=orm.Float(300.0), steps=orm.Int(50),
                      stride=orm.Int(10), seed=orm.Int(1))
        wait_until(lambda: node.is_terminated, 300)
        assert node.is_finished_ok, (node.process_state, node.exit_status, client.daemon_log_file)
        assert node.outputs.trajectory.numsteps == 6
        assert node.outputs.final_velocities.get_array("velocities").shape == (6, 3)
