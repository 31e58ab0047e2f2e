"""Helpers to run aiida-irspec's VASP WorkChains against aiida-vasp's ``mock-vasp``.

``mock-vasp`` (a console script of aiida-vasp) stands in for the VASP executable: it parses the INCAR,
POSCAR and KPOINTS it is given, hashes them, and copies in the outputs of the registry case with the
same hash (``MOCK_VASP_REG_BASE``/CASE/inp/{INCAR,POSCAR,KPOINTS} + CASE/out/*); without a match it
fails. Registries are built per test in a temporary folder from the REAL VASP outputs in
../shared/data; the case inputs are the files the WorkChain's CalcJob writes (made by a dry run of
the same inputs), or the run's own real input files where those hash the same.

POTCARs: VASP's potentials are licensed and VASP never runs here, so, as aiida-vasp's own tests do,
the potential family is uploaded from stand-in POTCAR files (header only: TITEL, LEXCH, POMASS, ZVAL,
ENMAX) that aiida-vasp can parse. mock-vasp ignores the POTCAR.
"""

import gzip
import os
import pathlib
import shutil
import sys

POTCAR_FAMILY = "irspec-test-standin"

_POTCAR_STANDIN = """  PAW_PBE {name} 01Jan2000
   {zval:.8f}
 parameters from PSCTR are:
   VRHFIN ={element}: stand-in for tests, not a potential
   LEXCH  = PE
   TITEL  = PAW_PBE {name} 01Jan2000
   POMASS =  {mass:8.3f}; ZVAL   = {zval:8.3f}    mass and valenz
   ENMAX  =  400.000; ENMIN  =  300.000 eV
   LPAW   =        T    paw PP
 END of PSCTR-controll parameters
 End of Dataset
"""


def upload_standin_family(folder, names, label=POTCAR_FAMILY):
    """Upload stand-in POTCARs (one per POTCAR name, e.g. ``Zr_sv``) as the potential family ``label``."""
    from aiida.plugins import DataFactory
    from ase.data import atomic_masses, atomic_numbers

    folder = pathlib.Path(folder) / label
    for name in names:
        element = name.split("_")[0]
        path = folder / name / "POTCAR"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_POTCAR_STANDIN.format(name=name, element=element, zval=1.0,
                                               mass=atomic_masses[atomic_numbers[element]]))
    DataFactory("vasp.potcar").upload_potcar_family(str(folder), label, "stand-ins for tests",
                                                   stop_if_existing=False)
    return label


def mock_vasp_code(computer, label="mock-vasp"):
    """An InstalledCode running aiida-vasp's strict ``mock-vasp`` on ``computer``."""
    from aiida import orm

    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        pass
    executable = shutil.which("mock-vasp") or str(pathlib.Path(sys.executable).parent / "mock-vasp")
    return orm.InstalledCode(label=label, computer=computer, filepath_executable=executable,
                             default_calc_job_plugin="vasp.vasp").store()


def registry_options(registry):
    """CalcJob options that point mock-vasp at ``registry``."""
    return {"resources": {"num_machines": 1}, "max_wallclock_seconds": 600,
            "prepend_text": f"export MOCK_VASP_REG_BASE={registry}"}


def calcjob_inputs(builder):
    """The inputs that the VASP WorkChain of ``builder`` (aiida-vasp's ``vasp.v2.vasp`` and our subclasses) gives
    its CalcJob, as its ``init_inputs`` makes them: parameters = the ``incar`` tags, POTCARs of the family and
    mapping, the k-point mesh of ``kpoints_spacing * 2 pi`` (or the given KpointsData)."""
    import math

    from aiida import orm
    from aiida.plugins import DataFactory

    inputs = builder._inputs(prune=True)
    structure = inputs["structure"]
    calc = {"code": inputs["code"], "structure": structure, "parameters": orm.Dict(inputs["parameters"]["incar"]),
            "potential": DataFactory("vasp.potcar").get_potcars_from_structure(
                structure, inputs["potential_family"].value, mapping=inputs["potential_mapping"].get_dict()),
            "metadata": {"options": dict(inputs.get("calc", {}).get("metadata", {}).get("options", {}))}}
    if "kpoints" in inputs:
        calc["kpoints"] = inputs["kpoints"]
    else:
        kpoints = orm.KpointsData()
        kpoints.set_cell_from_structure(structure)
        kpoints.set_kpoints_mesh_from_density(inputs["kpoints_spacing"].value * 2 * math.pi)
        calc["kpoints"] = kpoints
    for name in ("settings", "velocities", "ml_ff", "ml_ab"):
        if name in inputs:
            calc[name] = inputs[name]
    return calc


def case_from_builder(builder, case, outputs):
    """A registry case whose inputs are the files the builder's CalcJob writes (a dry run of
    :func:`calcjob_inputs`), with real ``outputs`` (name -> path). Returns the dry-run folder."""
    process_class = builder._process_class._process_class
    dry = written_inputs(process_class, calcjob_inputs(builder), pathlib.Path(case) / "inp")
    add_outputs(case, outputs)
    return dry


def written_inputs(process_class, inputs, folder):
    """The INCAR, POSCAR and KPOINTS that ``process_class`` writes for ``inputs`` (a dry run), copied to ``folder``.

    :returns: the dry-run folder (for inspecting everything else it wrote).
    """
    from aiida.engine import run_get_node

    inputs = dict(inputs)
    metadata = dict(inputs.pop("metadata", {}))
    metadata.update({"dry_run": True, "store_provenance": False})
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)  # a dry run writes its submit_test/ folder into the working directory
    try:
        _, node = run_get_node(process_class, metadata=metadata, **inputs)
    finally:
        os.chdir(cwd)
    dry = folder / node.dry_run_info["folder"]
    for name in ("INCAR", "POSCAR", "KPOINTS"):
        shutil.copy(dry / name, folder / name)
    return dry


def add_outputs(case, outputs):
    """Copy real VASP output files into ``case``/out (``name -> path``; ``.gz`` files are decompressed)."""
    out = pathlib.Path(case) / "out"
    out.mkdir(parents=True, exist_ok=True)
    for name, path in outputs.items():
        path = pathlib.Path(path)
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as source, open(out / name, "wb") as target:
                shutil.copyfileobj(source, target)
        else:
            shutil.copy(path, out / name)
    return pathlib.Path(case)


VASP_OUTPUTS = ("OUTCAR", "vasprun.xml", "CONTCAR", "OSZICAR", "XDATCAR", "EIGENVAL", "DOSCAR", "IBZKPT",
                "PCDAT", "DYNMAT", "REPORT", "vasp_output")


def add_real_run(case, run_dir, inputs=("INCAR", "POSCAR", "KPOINTS")):
    """A case made entirely of a real run folder: its own input files, and its VASP output files as outputs."""
    run_dir = pathlib.Path(run_dir)
    inp = pathlib.Path(case) / "inp"
    inp.mkdir(parents=True, exist_ok=True)
    for name in inputs:
        shutil.copy(run_dir / name, inp / name)
    return add_outputs(case, {name: run_dir / name for name in VASP_OUTPUTS if (run_dir / name).is_file()})


MAPPING = {"Zr": "Zr_sv", "O": "O_s"}

#: The real VASP 6.3.0 MLFF on-the-fly training run of ../shared/data/vasp-md (80 atoms, C32H32O16, NVT at
#: 300 K, POTIM 1 fs, NSW 100): 20 DFT steps in <calculation> blocks, 80 ML steps as bare <structure> blocks.
MLFF_TRAINING = ("vasp-md", "pmg-vasprun.ml_md.xml", "vasprun.ml_md.xml.gz")
#: Its task for our MD builders (the registry case is made from the INCAR our builder writes for it).
MLFF_TASK = {"ensemble": "nvt", "temperature": 300.0, "steps": 100, "timestep": 1.0}
MLFF_MAPPING = {"C": "C", "H": "H", "O": "O"}
#: A real VASP 6.3.0 MLFF training OUTCAR (CH4, complete). aiida-vasp's parser takes the run status (finished,
#: electronic convergence) from OUTCAR only, never from vasprun.xml, and the training run above comes without its
#: OUTCAR: this one stands beside its vasprun.xml in the mock cases for aiida-vasp's run status alone (the
#: WorkChain reads the steps from vasprun.xml, which it prefers).
MLFF_STATUS_OUTCAR = ("vasp-md", "dpdata-OUTCAR.ch4.ml", "OUTCAR.ch4.ml")


def mlff_outputs(shared_data, vasprun=None):
    """Retrieved files of an MLFF case: the training vasprun.xml (or ``vasprun``) and the run-status OUTCAR."""
    return {"vasprun.xml": vasprun or mlff_training_vasprun(shared_data),
            "OUTCAR": pathlib.Path(shared_data).joinpath(*MLFF_STATUS_OUTCAR)}


def mlff_training_vasprun(shared_data):
    """Path of the real MLFF training vasprun.xml (gzip)."""
    return pathlib.Path(shared_data).joinpath(*MLFF_TRAINING)


def mlff_structure(shared_data):
    """StructureData of the training run's first step (its initial positions)."""
    from aiida import orm
    from ase.io import read

    return orm.StructureData(ase=read(mlff_training_vasprun(shared_data), index=0, format="vasp-xml"))


def mlff_production_vasprun(shared_data, path):
    """The layout of a production run with a trained force field (no <calculation> block, pymatgen issue 4200),
    made from the real training file by dropping its <calculation> blocks: the real bare <structure> / <energy>
    blocks of its 80 ML steps remain. Written to ``path``; returns it."""
    import re

    text = gzip.decompress(mlff_training_vasprun(shared_data).read_bytes()).decode("iso-8859-1")
    path = pathlib.Path(path)
    path.write_bytes(re.sub(r"\n <calculation>.*?\n </calculation>", "", text, flags=re.S).encode("iso-8859-1"))
    return path

# 12 structures of the shared ZrO2 set whose OUTCARs aiida-vasp's parser (parsevasp) judges electronically
# converged. It flags some of the real DFPT runs (e.g. 23, 29, 31, 37) as not converged (an ionic step at NELM),
# which makes VaspBornChargesWorkChain restart them (the handler is tested in tests/test_vasp_workchains.py).
ZRO2_CONVERGED = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 25)


def zro2_pool(zro2_dir, numbers):
    """A stored periodic TrajectoryData whose frame k is POSCAR.<numbers[k]> (positions and cell)."""
    import numpy as np
    from aiida import orm
    from ase.io import read

    frames = [read(zro2_dir / f"POSCAR.{n}", format="vasp") for n in numbers]
    pool = orm.TrajectoryData()
    pool.set_trajectory(frames[0].get_chemical_symbols(), np.array([f.positions for f in frames]),
                        stepids=np.arange(len(frames)), cells=np.array([f.cell.array for f in frames]),
                        pbc=(True, True, True))
    return pool.store()


def zro2_born_charges_setup(computer, zro2_dir, folder, numbers):
    """A ZrO2 pool (frame k = structure ``numbers[k]``; numbers may repeat), a mock-vasp code on ``computer``,
    stand-in POTCARs and a registry in ``folder`` with one DFPT case per distinct structure: the INCAR / POSCAR /
    KPOINTS that VaspBornChargesWorkChain writes for it (a dry run) with that structure's real OUTCAR.

    :returns: dict with ``pool``, ``numbers`` (list), ``code``, ``family`` (label) and ``options`` (CalcJob options).
    """
    from aiida_irspec.data.frames import frame_structure
    from aiida_irspec.workflows.vasp.born_charges import VaspBornChargesWorkChain

    numbers = list(numbers)
    pool = zro2_pool(zro2_dir, numbers)
    folder = pathlib.Path(folder)
    family = upload_standin_family(folder / "potcars", sorted(set(MAPPING.values())))
    code = mock_vasp_code(computer)
    registry = folder / "registry"
    options = registry_options(registry)
    for number in sorted(set(numbers)):
        builder = VaspBornChargesWorkChain.get_builder_from_protocol(
            code, frame_structure(pool, numbers.index(number)), options=options, potential_family=family,
            potential_mapping=MAPPING)
        case_from_builder(builder, registry / f"zro2-{number}", {"OUTCAR": zro2_dir / f"OUTCAR.{number}.gz"})
    return {"pool": pool, "numbers": numbers, "code": code, "family": family, "options": options}
