"""The VASP WorkChains (aiida-vasp's ``vasp.v2.vasp`` with ours on top) run aiida-vasp's real CalcJob and parser
against aiida-vasp's ``mock-vasp``.

Every VASP output used here is a real one from ../shared/data (aiida-vasp's test runs, the ZrO2 DFPT set, the
MLFF MD outputs of vasp-md); registries are built per test (see tests/vasp_mock.py). The MD tests run the real
layouts of MLFF output: on-the-fly training (DFT steps in <calculation>, ML steps outside), a production run
(no <calculation>: made from the training file by dropping those blocks) and an MLFF training OUTCAR.
"""

import io
import pathlib

import numpy as np
import pytest
from vasp_mock import (MLFF_MAPPING, MLFF_TASK, add_real_run, case_from_builder, mlff_outputs,
                       mlff_production_vasprun, mlff_structure, mlff_training_vasprun, mock_vasp_code,
                       registry_options, upload_standin_family)

pytestmark = pytest.mark.shared


@pytest.fixture
def vasp_env(aiida_profile_clean, aiida_localhost, tmp_path):
    """A clean profile with the mock-vasp code, a stand-in potential family and an empty registry."""
    family = upload_standin_family(tmp_path / "potcars", ["P", "S", "Zn", "Si", "Zr_sv", "O_s", "C", "H", "O"])
    registry = tmp_path / "registry"
    registry.mkdir()
    return {"code": mock_vasp_code(aiida_localhost), "family": family, "registry": registry}


def structure_from(path):
    from aiida import orm
    from ase.io import read

    return orm.StructureData(ase=read(path, format="vasp"))


def incar_overrides(protocol_tags, incar_path):
    """Overrides that turn the protocol's INCAR into the real run's INCAR (``None`` removes a tag)."""
    from parsevasp.incar import Incar

    real = {key.upper(): value for key, value in Incar(file_path=str(incar_path), validate_tags=False)
            .get_dict().items()}
    overrides = {key: None for key in protocol_tags if key not in real}
    overrides.update(real)
    return overrides


def born_builder(env, structure, overrides=None, **kwargs):
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    return VaspBornChargesWorkChain.get_builder_from_protocol(
        env["code"], structure, overrides=overrides, options=registry_options(env["registry"]),
        potential_family=env["family"], **kwargs)


def run_workchain(builder):
    from aiida.engine import run_get_node

    _, node = run_get_node(builder)
    return node


def vasp_calcs(node):
    """The VASP CalcJobs a WorkChain ran, in order."""
    return sorted((n for n in node.called if n.process_label in ("VaspCalculation", "VaspMdCalculation")),
                  key=lambda n: n.ctime)


def test_dfpt_real_vasp54_run(vasp_env, shared_data):
    """The 5.4.4 LEPSILON run (its own INCAR, POSCAR, KPOINTS): Born charges from aiida-vasp's vasprun
    parser, bit-identical; equal to the OUTCAR reader to its printed precision."""
    from aiida import orm

    from aiida_irspec.io.vasp import read_outcar_born_charges, read_vasprun_born_charges
    from aiida_irspec.workflows.protocols import load_protocol

    run = shared_data / "aiida-vasp" / "born_effective_charge"
    add_real_run(vasp_env["registry"] / "born_effective_charge", run)
    structure = structure_from(run / "POSCAR")
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([3, 3, 2])
    protocol = load_protocol("vasp", "born_charges", "moderate")["parameters"]
    builder = born_builder(vasp_env, structure, {"parameters": incar_overrides(protocol, run / "INCAR")},
                           kpoints=kpoints)
    node = run_workchain(builder)
    assert node.is_finished_ok, node.exit_status
    (calc,) = vasp_calcs(node)
    born = node.outputs.born_charges
    assert born.source["format"] == "vasprun"
    assert born.source["sha256"] == read_vasprun_born_charges(run / "vasprun.xml").source["sha256"]
    assert np.array_equal(born.born_charges, calc.outputs.born_charges.get_array("born_charges"))
    assert np.array_equal(born.born_charges, read_vasprun_born_charges(run / "vasprun.xml").born_charges)
    outcar = read_outcar_born_charges(run / "OUTCAR")
    assert not np.array_equal(born.born_charges, outcar.born_charges)  # vasprun.xml has more digits
    # OUTCAR prints Z with 5 decimals and epsilon with 6: agreement to half a unit in the last place
    np.testing.assert_allclose(born.born_charges, outcar.born_charges, atol=5e-6 + 1e-12, rtol=0)
    np.testing.assert_allclose(born.dielectric, outcar.dielectric, atol=5e-7 + 1e-12, rtol=0)
    assert born.symbols == structure.get_ase().get_chemical_symbols()
    assert born.born_charges.shape == (26, 3, 3)


def test_dfpt_zro2_outcar_only(vasp_env, zro2_dir):
    """A ZrO2 DFPT run with only an OUTCAR (no vasprun.xml), launched through the engine-agnostic
    irspec.born_charges (engine "vasp"): the OUTCAR rule, bit-identical to read_born_charges."""
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.io.vasp import read_born_charges

    structure = structure_from(zro2_dir / "POSCAR.1")
    mapping = {"Zr": "Zr_sv", "O": "O_s"}
    builder = born_builder(vasp_env, structure, potential_mapping=mapping)
    tags = builder.parameters.get_dict()["incar"]
    assert tags["lepsilon"] is True and tags["lreal"] is False and tags["ediff"] == 1e-7
    assert builder.kpoints_spacing.value == pytest.approx(0.25 / (2 * np.pi))  # kpoints_distance 0.25 with 2 pi
    case_from_builder(builder, vasp_env["registry"] / "zro2-1", {"OUTCAR": zro2_dir / "OUTCAR.1.gz"})

    agnostic = WorkflowFactory("irspec.born_charges").get_builder()
    agnostic.structure, agnostic.code, agnostic.engine = structure, vasp_env["code"], orm.Str("vasp")
    agnostic.protocol = orm.Str("moderate")
    agnostic.options = orm.Dict(registry_options(vasp_env["registry"]))
    agnostic.engine_inputs = {"potential_family": orm.Str(vasp_env["family"]), "potential_mapping": orm.Dict(mapping)}
    node = run_workchain(agnostic)
    assert node.is_finished_ok, node.exit_status
    born = node.outputs.born_charges
    record = read_born_charges(zro2_dir / "OUTCAR.1.gz")
    assert np.array_equal(born.born_charges, record.born_charges)
    assert np.array_equal(born.dielectric, record.dielectric)
    assert born.source["format"] == "outcar" and born.source["sha256"] != record.source["sha256"]  # plain vs gz
    assert born.symbols == ["Zr"] * 32 + ["O"] * 64
    (calc,) = [n for n in node.called_descendants if n.process_label == "VaspCalculation"]
    assert {kind: calc.inputs.potential[kind].full_name for kind in ("Zr", "O")} == mapping


def exit_code_builder(env, run, **kwargs):
    """A DFPT builder whose INCAR and POSCAR are those of an aiida-vasp exit_codes run (4x4x4 mesh)."""
    from aiida import orm

    from aiida_irspec.workflows.protocols import load_protocol

    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([4, 4, 4])
    protocol = load_protocol("vasp", "born_charges", "moderate")["parameters"]
    overrides = {"parameters": incar_overrides(protocol, run / "INCAR")}
    overrides["parameters"]["LEPSILON"] = True  # the real INCAR has none; our builder always sets it
    overrides.update(kwargs.pop("overrides", {}))
    return born_builder(env, structure_from(run / "POSCAR"), overrides, kpoints=kpoints, **kwargs)


def real_outputs(run):
    return {p.name: p for p in run.iterdir() if p.name not in ("INCAR", "POSCAR", "KPOINTS")}


@pytest.mark.parametrize(("case", "exit_status", "label", "runs"), [
    ("unfinished", 501, "ERROR_OTHER_INTERVENTION_NEEDED", 2),
    ("converged-with-error", 501, "ERROR_OTHER_INTERVENTION_NEEDED", 1),
    pytest.param("converged", 340, "ERROR_NO_BORN_CHARGES", 1, marks=pytest.mark.slow),
])
def test_dfpt_failures_end_with_documented_exit_codes(vasp_env, shared_data, case, exit_status, label, runs):
    """Real failed (or Born-charge-less) runs end the WorkChain with its documented exit code: aiida-vasp's
    handlers run an unfinished job once more and stop on a critical VASP error (BRMIX); ours on no Born charges."""
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    run = shared_data / "aiida-vasp" / "exit_codes" / case / "out"
    builder = exit_code_builder(vasp_env, run)
    case_from_builder(builder, vasp_env["registry"] / case, real_outputs(run))
    node = run_workchain(builder)
    assert node.exit_status == exit_status == VaspBornChargesWorkChain.exit_codes[label].status
    assert len(vasp_calcs(node)) == runs
    assert "born_charges" not in node.outputs


def test_dfpt_electronic_convergence_handler(vasp_env, shared_data):
    """elec-unconverged (ALGO = Fast, NELM = 8) -> the linear-response handler restarts with ALGO = Normal; that
    run (the real `converged` outputs: same system, NELM = 20) converges but is a relaxation without Born
    charges: 340."""
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    root = shared_data / "aiida-vasp" / "exit_codes"
    builder = exit_code_builder(vasp_env, root / "elec-unconverged" / "out")
    case_from_builder(builder, vasp_env["registry"] / "elec-unconverged",
                      real_outputs(root / "elec-unconverged" / "out"))
    builder_restart = exit_code_builder(vasp_env, root / "elec-unconverged" / "out")
    builder_restart.parameters = {"incar": builder.parameters.get_dict()["incar"] | {"algo": "Normal"}}
    case_from_builder(builder_restart, vasp_env["registry"] / "restarted", real_outputs(root / "converged" / "out"))
    node = run_workchain(builder)
    first, second = vasp_calcs(node)
    assert first.exit_status == 701 and second.is_finished_ok
    assert second.inputs.parameters["algo"] == "Normal" and first.inputs.parameters["algo"] == "Fast"
    assert node.exit_status == VaspBornChargesWorkChain.exit_codes.ERROR_NO_BORN_CHARGES.status


@pytest.mark.slow
def test_dfpt_electronic_convergence_gives_up(vasp_env, shared_data):
    """When every restart stays unconverged the WorkChain stops: max_iterations = 2 -> 401 after one fix."""
    run = shared_data / "aiida-vasp" / "exit_codes" / "elec-unconverged" / "out"
    builder = exit_code_builder(vasp_env, run, overrides={"max_iterations": 2})
    case_from_builder(builder, vasp_env["registry"] / "first", real_outputs(run))
    again = exit_code_builder(vasp_env, run)
    again.parameters = {"incar": builder.parameters.get_dict()["incar"] | {"algo": "Normal"}}
    case_from_builder(again, vasp_env["registry"] / "second", real_outputs(run))
    node = run_workchain(builder)
    assert node.exit_status == 401
    assert [calc.exit_status for calc in vasp_calcs(node)] == [701, 701]


def md_builder(env, structure, **kwargs):
    from aiida_irspec.workflows.vasp.md import VaspMdWorkChain

    return VaspMdWorkChain.get_builder_from_protocol(env["code"], structure, potential_family=env["family"],
                                                     options=registry_options(env["registry"]), **kwargs)


def read_incar(path):
    from parsevasp.incar import Incar

    return {key.upper(): value for key, value in Incar(file_path=str(path), validate_tags=False).get_dict().items()}


def test_md_inputs_nvt_langevin_train_with_velocities(vasp_env, zro2_dir, tmp_path):
    """On-the-fly training, Langevin NVT, initial velocities: the INCAR and POSCAR the CalcJob writes."""
    from ase.io import read

    structure = structure_from(zro2_dir / "POSCAR.1")
    velocities = np.random.default_rng(0).normal(0.0, 0.01, (96, 3))
    builder = md_builder(vasp_env, structure, ensemble="nvt", thermostat="langevin", temperature=600.0, steps=50,
                         timestep=1.0, seed=11, initial_velocities=velocities,
                         potential_mapping={"Zr": "Zr_sv", "O": "O_s"}, protocol="fast")
    dry = case_from_builder(builder, tmp_path / "case", {})
    incar = read_incar(dry / "INCAR")
    expected = {"IBRION": 0, "NSW": 50, "POTIM": 1.0, "TEBEG": 600.0, "TEEND": 600.0, "MDALGO": 3,
                "LANGEVIN_GAMMA": [10.0, 10.0], "ML_LMLFF": True, "ML_MODE": "train", "RANDOM_SEED": [11, 0, 0]}
    assert {key: incar[key] for key in expected} == expected and "ML_OUTBLOCK" not in incar
    atoms = read(dry / "POSCAR", format="vasp")
    np.testing.assert_allclose(atoms.positions, structure.get_ase().positions, atol=1e-8)
    from aiida_irspec.io.vasp import read_final_velocities

    lines = (dry / "POSCAR").read_text().splitlines()
    assert lines[-97] == "Cartesian"  # VASP's POSCAR velocity block, Angstrom/fs
    np.testing.assert_allclose(read_final_velocities(dry / "POSCAR"), velocities, rtol=1e-11, atol=1e-16)
    assert not (dry / "ML_FF").exists()
    assert builder.settings["skip_parameters_validation"] is True


def test_md_inputs_nve_run_stages_ml_ff(vasp_env, shared_data, tmp_path):
    """NVE with a given force field (SinglefileData): ML_FF is staged, MDALGO = 1 with ANDERSEN_PROB = 0."""
    from aiida import orm

    run = shared_data / "aiida-vasp" / "exit_codes" / "ionic-unconverged" / "out"
    content = b"stand-in ML_FF for a test: not a force field\n"
    ml_ff = orm.SinglefileData(io.BytesIO(content), filename="ML_FFN")
    builder = md_builder(vasp_env, structure_from(run / "POSCAR"), ensemble="nve", temperature=300.0, steps=5,
                         timestep=2.0, ml_ff=ml_ff)
    dry = case_from_builder(builder, tmp_path / "case", {})
    incar = read_incar(dry / "INCAR")
    assert (incar["MDALGO"], incar["ANDERSEN_PROB"], incar["ML_MODE"], incar["ML_OUTBLOCK"]) == (1, 0.0, "run", 1)
    assert "SMASS" not in incar and "LANGEVIN_GAMMA" not in incar
    assert (dry / "ML_FF").read_bytes() == content
    from aiida_irspec.exceptions import InputError

    with pytest.raises(InputError, match="ml_ff"):
        md_builder(vasp_env, structure_from(run / "POSCAR"), ml_mode="run")
    with pytest.raises(InputError, match="initial_velocities"):
        md_builder(vasp_env, structure_from(run / "POSCAR"), initial_velocities=np.zeros((3, 3)))


def test_md_mlff_training_real_layout(vasp_env, shared_data):
    """irspec.md (engine "vasp") through mock-vasp with the real outputs of a VASP 6.3 MLFF on-the-fly training
    run (20 DFT steps in <calculation>, 80 ML steps outside): the trajectory holds all 100 steps in order, 1 fs
    apart, with their DFT/ML origin, VASP's energies, and velocities whose kinetic energy is VASP's to 1 %."""
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.io.vasp import kinetic_energy_of, read_trajectory

    structure = mlff_structure(shared_data)
    builder = md_builder(vasp_env, structure, potential_mapping=MLFF_MAPPING, **MLFF_TASK)
    case_from_builder(builder, vasp_env["registry"] / "mlff-train", mlff_outputs(shared_data))

    agnostic = WorkflowFactory("irspec.md").get_builder()
    agnostic.structure, agnostic.code, agnostic.engine = structure, vasp_env["code"], orm.Str("vasp")
    agnostic.options = orm.Dict(registry_options(vasp_env["registry"]))
    agnostic.ensemble, agnostic.temperature = orm.Str(MLFF_TASK["ensemble"]), orm.Float(MLFF_TASK["temperature"])
    agnostic.steps, agnostic.timestep = orm.Int(MLFF_TASK["steps"]), orm.Float(MLFF_TASK["timestep"])
    agnostic.engine_inputs = {"potential_family": orm.Str(vasp_env["family"]),
                              "potential_mapping": orm.Dict(MLFF_MAPPING)}
    node = run_workchain(agnostic)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    trajectory = node.outputs.trajectory
    reference = read_trajectory(mlff_training_vasprun(shared_data))
    assert trajectory.numsteps == 100 and trajectory.get_stepids().tolist() == list(range(1, 101))
    np.testing.assert_array_equal(trajectory.get_array("times"), np.arange(100.0))
    origin = trajectory.get_array("origin")
    assert (origin == "dft").sum() == 20 and (origin == "ml").sum() == 80
    np.testing.assert_array_equal(trajectory.get_positions(), reference.positions)
    np.testing.assert_array_equal(trajectory.get_array("potential_energy"), reference.energy)
    np.testing.assert_array_equal(trajectory.get_array("kinetic_energy"), reference.kinetic_energy)
    velocities = trajectory.get_array("velocities")
    masses = reference.masses
    ratio = kinetic_energy_of(velocities, masses)[1:-1] / reference.kinetic_energy[1:-1]
    assert np.all(np.abs(ratio - 1) < 0.01)
    source = trajectory.base.attributes.get("source")
    assert source["format"] == "vasprun" and source["vasp_version"] == "6.3.0"
    assert "bare <structure>" in source["layout"]


def test_md_mlff_production_layout_ml_ff_remote(vasp_env, shared_data, tmp_path):
    """ML_MODE = run with ML_FF from a RemoteData (staged on the computer), the real layout of a production run
    (no <calculation> block): 80 ML steps, aiida-vasp's electronic checks off, finished."""
    from aiida import orm

    ml_ff_path = tmp_path / "remote" / "ML_FFN"
    ml_ff_path.parent.mkdir()
    ml_ff_path.write_text("stand-in ML_FF for a test: not a force field\n")
    ml_ff = orm.RemoteData(remote_path=str(ml_ff_path), computer=vasp_env["code"].computer).store()
    builder = md_builder(vasp_env, mlff_structure(shared_data), potential_mapping=MLFF_MAPPING, ml_ff=ml_ff,
                         **{**MLFF_TASK, "steps": 80})
    assert builder.handler_overrides.get_dict() == {"check_electronic_converged": False}
    production = mlff_production_vasprun(shared_data, tmp_path / "vasprun.xml")
    case_from_builder(builder, vasp_env["registry"] / "mlff-run", mlff_outputs(shared_data, production))
    node = run_workchain(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    (calc,) = vasp_calcs(node)
    workdir = pathlib.Path(calc.outputs.remote_folder.get_remote_path())
    assert (workdir / "ML_FF").read_text() == ml_ff_path.read_text()
    trajectory = node.outputs.trajectory
    assert trajectory.numsteps == 80 and set(trajectory.get_array("origin")) == {"ml"}
    assert trajectory.base.attributes.get("source")["layout"].startswith("machine-learned steps")


def test_md_mlff_outcar_only(vasp_env, shared_data):
    """A run whose only output is the real VASP 6.3 MLFF training OUTCAR (NpT, CH4): 10 steps, 4 with DFT,
    energies from 'free energy TOTEN' / 'free energy ML TOTEN', the cell of every step."""
    from aiida import orm

    from aiida_irspec.io.vasp import read_structure

    outcar = shared_data / "vasp-md" / "dpdata-OUTCAR.ch4.ml" / "OUTCAR.ch4.ml"
    builder = md_builder(vasp_env, orm.StructureData(ase=read_structure(outcar)),
                         potential_mapping={"C": "C", "H": "H"}, **{**MLFF_TASK, "steps": 10})
    case_from_builder(builder, vasp_env["registry"] / "ch4", {"OUTCAR": outcar})
    node = run_workchain(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    trajectory = node.outputs.trajectory
    assert trajectory.numsteps == 10 and (trajectory.get_array("origin") == "dft").sum() == 4
    volumes = np.abs(np.linalg.det(trajectory.get_cells()))
    assert volumes[0] == pytest.approx(1000.0) and volumes[-1] == pytest.approx(1000.58, abs=0.01)
    assert trajectory.get_array("potential_energy")[0] == -24.12709802


def test_trajectory_files_preference(shared_data, tmp_path):
    """vasprun.xml first; an OUTCAR with gaps (NWRITE = 0) only when nothing else reads, then without velocities;
    nothing readable: None; only a damaged file: its error."""
    import shutil

    from aiida_irspec.exceptions import MalformedFileError
    from aiida_irspec.workflows.vasp.md import trajectory_arrays

    md = shared_data / "vasp-md"
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(md / "dpdata-Ti-aimd-nwrite0_OUTCAR" / "OUTCAR", both / "OUTCAR")
    shutil.copy(md / "dpdata-Ti-aimd-nwrite0_vasprun.xml" / "vasprun.xml", both / "vasprun.xml")
    assert trajectory_arrays(both, {"POTIM": 2.0})[0].source["format"] == "vasprun"
    (both / "vasprun.xml").write_text("<?xml version='1.0'?>\n<modeling>\n")  # cut off before any step
    gaps = trajectory_arrays(both, {"POTIM": 2.0})[0]
    assert gaps.source["format"] == "outcar" and gaps.velocity_problem() is not None
    (both / "OUTCAR").unlink()
    with pytest.raises(MalformedFileError):
        trajectory_arrays(both, {"POTIM": 2.0})
    (both / "vasprun.xml").unlink()
    assert trajectory_arrays(both, {"POTIM": 2.0})[0] is None


def test_md_run_mode_unfinished_ends_with_502(vasp_env, shared_data, tmp_path):
    """ML_MODE = run switches aiida-vasp's parser checks off; a run VASP did not finish (the real `unfinished`
    outputs stand in) is still caught: no wall time on core.direct, so aiida-vasp's check stops it with 502."""
    from aiida import orm

    from aiida_irspec.workflows.vasp.md import VaspMdWorkChain

    run = shared_data / "aiida-vasp" / "exit_codes" / "unfinished" / "out"
    ml_ff = orm.SinglefileData(io.BytesIO(b"stand-in ML_FF for a test: not a force field\n"), filename="ML_FF")
    builder = md_builder(vasp_env, structure_from(run / "POSCAR"), ensemble="nve", temperature=300.0, steps=5,
                         timestep=2.0, ml_ff=ml_ff)
    case_from_builder(builder, vasp_env["registry"] / "unfinished", real_outputs(run))
    node = run_workchain(builder)
    calcs = vasp_calcs(node)
    assert len(calcs) == 1 and calcs[0].is_finished_ok
    assert node.exit_status == VaspMdWorkChain.exit_codes.ERROR_CALCULATION_NOT_FINISHED.status == 502
    assert "trajectory" not in node.outputs


def test_dfpt_wrong_number_of_ions(vasp_env, shared_data):
    """Outputs that belong to another structure (the 26-ion 5.4 run registered for the 2-atom Si cell): 341."""
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    builder = exit_code_builder(vasp_env, shared_data / "aiida-vasp" / "exit_codes" / "converged" / "out")
    run = shared_data / "aiida-vasp" / "born_effective_charge"
    case_from_builder(builder, vasp_env["registry"] / "mixed-up", {name: run / name for name in
                                                                  ("OUTCAR", "vasprun.xml", "CONTCAR")})
    node = run_workchain(builder)
    assert node.exit_status == VaspBornChargesWorkChain.exit_codes.ERROR_WRONG_NUMBER_OF_IONS.status
    assert "26" in node.exit_message and "2" in node.exit_message


def test_md_frames_of_another_structure_end_with_341(vasp_env, shared_data):
    """A finished run whose steps have another number of atoms (the real MLFF training vasprun.xml registered for
    the 2-atom Si cell): 341."""
    from aiida_irspec.workflows.vasp.md import VaspMdWorkChain

    run = shared_data / "aiida-vasp" / "exit_codes" / "converged" / "out"
    builder = md_builder(vasp_env, structure_from(run / "POSCAR"), **{**MLFF_TASK, "steps": 5})
    case_from_builder(builder, vasp_env["registry"] / "mixed-up", mlff_outputs(shared_data))
    node = run_workchain(builder)
    assert vasp_calcs(node)[0].is_finished_ok
    assert node.exit_status == VaspMdWorkChain.exit_codes.ERROR_WRONG_NUMBER_OF_IONS.status == 341
    assert "80" in node.exit_message


@pytest.mark.parametrize(("scheduler", "exit_status", "stderr", "expected"), [
    ("core.slurm", 700, "slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2026-11-25T18:00:00 "
                        "DUE TO TIME LIMIT ***\n", True),
    ("core.slurm", 700, "", False),
    ("core.direct", 700, "", False),
    ("core.direct", 120, "", True),
])
def test_walltime_detection(aiida_profile_clean, aiida_computer, scheduler, exit_status, stderr, expected):
    """The walltime handler's test: aiida-vasp's parser turns SLURM's 120 into 700, so the scheduler's own
    output parser (core.slurm's, on the retrieved stderr) decides; core.direct cannot tell."""
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_irspec.workflows.vasp.base import killed_for_walltime

    node = orm.CalcJobNode(computer=aiida_computer(scheduler_type=scheduler),
                           process_type="aiida.calculations:vasp.vasp")
    node.set_option("scheduler_stderr", "_scheduler-stderr.txt")
    node.store()
    retrieved = orm.FolderData()
    retrieved.put_object_from_filelike(io.BytesIO(stderr.encode()), "_scheduler-stderr.txt")
    retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
    retrieved.store()
    node.set_exit_status(exit_status)
    assert killed_for_walltime(node) is expected
