"""Fuzzing every file reader with damaged copies of real files (hypothesis).

Each reader gets the bytes of a good file after random damage (bytes replaced, inserted or deleted, a
line repeated, the file cut off) and must either raise the package's own error (:class:`IrspecError`: a
message naming the file, which the CLI prints without a traceback) or return a result that passes the
reader's own checks (finite arrays of consistent shapes). Any other exception is a bug.

Every test runs twice: ``quick`` (``QUICK`` examples, default run) and ``long`` (marked ``reliability``:
the examples of the hypothesis profile ``reliability`` registered in conftest.py, 1000 by default, set by
``IRSPEC_FUZZ_EXAMPLES``). The OUTCAR Born-charge block has its own line-level fuzz in test_io_vasp.py;
here the OUTCAR is damaged in its structure part (header, ions per type, positions, lattice).
"""

import io
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiida_irspec.exceptions import IrspecError
from campaign_helpers import WATER_DIMER, dimer_model, tiny_campaign_spec, water_dimer_md

QUICK = 40
RUNS = [pytest.param("quick", id="quick"), pytest.param("long", id="long", marks=pytest.mark.reliability)]

# one damage: (kind, position in [0, 1), payload bytes)
_damage = st.tuples(st.sampled_from(["replace", "insert", "delete", "repeat_line", "truncate"]),
                    st.floats(0, 1, exclude_max=True),
                    st.binary(min_size=1, max_size=6) | st.sampled_from([b"nan", b"-", b"1e999", b"\n", b"<", b"*"]))
DAMAGES = st.lists(_damage, min_size=1, max_size=4)


def damaged(data, damages, start=0):
    """``data`` (bytes) with ``damages`` applied at positions in ``data[start:]``."""
    data = bytearray(data)
    for kind, where, payload in damages:
        if len(data) <= start:
            break
        at = start + int(where * (len(data) - start))
        if kind == "replace":
            data[at:at + len(payload)] = payload
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "delete":
            del data[at:at + 1 + len(payload) * 7]
        elif kind == "repeat_line":
            lo, hi = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
            hi = len(data) if hi < 0 else hi + 1
            data[hi:hi] = data[lo:hi]
        else:
            del data[at:]
    return bytes(data)


def budget(run, share=1.0):
    """Hypothesis settings: QUICK examples, or ``share`` of the loaded profile's (``long``)."""
    examples = QUICK if run == "quick" else max(QUICK, int(settings().max_examples * share))
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fuzz(run, damages_test, share=1.0):
    """Run a hypothesis test of one argument ``damages`` with the examples of :func:`budget`; print how many
    damaged files it read (shown with ``pytest -s``)."""
    cases = []

    def counted(damages):
        cases.append(damages)
        damages_test(damages)

    budget(run, share)(given(damages=DAMAGES)(counted))()
    print(f"\n{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}: {len(cases)} damaged files read")


def fuzz_file(run, path, data, read, valid, start=0):
    """Fuzz ``read(path)`` on damaged copies of ``data`` (bytes) written to ``path``: the package's error naming
    the file, or a result that passes ``valid(result)`` (which asserts)."""
    def check(damages):
        path.write_bytes(damaged(data, damages, start))
        try:
            result = read(path)
        except IrspecError as error:
            assert str(path) in str(error)
            return
        valid(result)

    fuzz(run, check)


def finite(*arrays):
    return all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrays)


# ---- VASP ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bec_dir(shared_data):
    """The VASP 5.4.4 LEPSILON run of aiida-vasp's test data (26 ions)."""
    return shared_data / "aiida-vasp" / "born_effective_charge"


@pytest.mark.shared
@pytest.mark.parametrize("run", RUNS)
def test_fuzz_vasprun_born_charges(bec_dir, tmp_path, run):
    """vasprun.xml damaged from its born_charges array on (structure, Z, epsilon): error or 26 finite Z."""
    from aiida_irspec.io.vasp import parse_born_charges

    data = (bec_dir / "vasprun.xml").read_bytes()
    fuzz_file(run, tmp_path / "vasprun.xml", data, lambda path: parse_born_charges(path.read_bytes(), str(path)),
              valid_born_charges, start=data.rfind(b"<structure name=\"finalpos\""))


@pytest.mark.shared
@pytest.mark.parametrize("run", RUNS)
def test_fuzz_outcar_structure_part(bec_dir, run):
    """OUTCAR damaged in its first 40 kB (version line, POSCAR echo, ions per type, lattice, positions)."""
    from aiida_irspec.io.vasp import parse_born_charges

    data = (bec_dir / "OUTCAR").read_bytes()
    head, tail = data[:40000], data[40000:]

    def check(damages):
        try:
            record = parse_born_charges(damaged(head, damages) + tail, "fuzzed/OUTCAR")
        except IrspecError as error:
            assert "fuzzed/OUTCAR" in str(error)
            return
        valid_born_charges(record)

    fuzz(run, check)


def valid_born_charges(record):
    assert record.born_charges.shape == (len(record.atoms), 3, 3) and finite(record.born_charges)
    assert finite(record.atoms.positions, record.atoms.cell.array)


@pytest.fixture(scope="module")
def xdatcar_bytes(tmp_path_factory):
    """An XDATCAR of 6 folded frames of a moving water molecule in a triclinic cell (ASE's writer)."""
    import ase
    import ase.io

    frames = []
    for k in range(6):
        atoms = ase.Atoms("OH2", positions=[[0.1 * k, 0, 0], [0.96, 0.1 * k, 0], [-0.24, 0.93, 0]],
                          cell=[[4.0, 0, 0], [0.5, 4.0, 0], [0.2, 0.3, 4.0]], pbc=True)
        atoms.wrap()
        frames.append(atoms)
    path = tmp_path_factory.mktemp("xdatcar") / "XDATCAR"
    ase.io.write(path, frames, format="vasp-xdatcar")
    return path.read_bytes()


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_xdatcar_trajectory(xdatcar_bytes, tmp_path, run):
    """read_trajectory on an XDATCAR: error, or frames of finite unwrapped positions and cells."""
    from aiida_irspec.io.vasp import read_trajectory

    fuzz_file(run, tmp_path / "XDATCAR", xdatcar_bytes, lambda path: read_trajectory(path, timestep=1.0),
              valid_md_trajectory)


@pytest.mark.shared
@pytest.mark.parametrize("run", RUNS)
def test_fuzz_vasprun_md_trajectory(shared_data, tmp_path, run):
    """read_trajectory on a real MLFF training vasprun.xml (DFT and ML steps) damaged from its first step on."""
    import gzip

    from aiida_irspec.io.vasp import read_trajectory

    data = gzip.decompress((shared_data / "vasp-md" / "pmg-vasprun.ml_md.xml" / "vasprun.ml_md.xml.gz").read_bytes())
    cut = 0
    for _ in range(4):  # cut before the 4th bare (ML) step: 9 DFT and 3 ML steps keep each example fast
        cut = data.find(b"\n <structure>\n", cut + 1)
    data = data[:cut]
    fuzz_file(run, tmp_path / "vasprun.xml", data, read_trajectory, valid_md_trajectory,
              start=data.find(b"<calculation>"))


@pytest.mark.shared
@pytest.mark.parametrize("run", RUNS)
def test_fuzz_outcar_md_trajectory(shared_data, tmp_path, run):
    """read_trajectory on a real MLFF training OUTCAR (DFT and ML steps) damaged in its steps."""
    from aiida_irspec.io.vasp import read_trajectory

    data = (shared_data / "vasp-md" / "dpdata-OUTCAR.ch4.ml" / "OUTCAR.ch4.ml").read_bytes()
    fuzz_file(run, tmp_path / "OUTCAR", data, read_trajectory, valid_md_trajectory,
              start=data.find(b"POSITION"))


def valid_md_trajectory(trajectory):
    frames = len(trajectory.steps)
    assert trajectory.positions.shape == (frames, len(trajectory.numbers), 3) and frames >= 1
    assert trajectory.times is None or trajectory.times.shape == (frames,)
    assert finite(trajectory.positions, trajectory.cells)
    assert trajectory.velocity_problem() is not None or np.all(np.isfinite(trajectory.velocities()))


# ---- trajectories, runs and curves of the package ------------------------------------------------------

@pytest.fixture(scope="module")
def trajectory_npz(tmp_path_factory):
    """The bytes of an engine MD trajectory (npz, 11 frames of the water dimer)."""
    path = tmp_path_factory.mktemp("npz") / "t.npz"
    result = water_dimer_md(steps=100, stride=10)
    result.save_npz(path)
    return path.read_bytes()


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_pdot_trajectory_npz(trajectory_npz, tmp_path, run):
    """``aiida-irspec pdot``'s reader on a damaged npz: error, or consistent finite arrays."""
    from aiida_irspec.campaign.pdot import read_trajectory

    def valid(trajectory):
        frames, atoms = len(trajectory["times"]), len(trajectory["numbers"])
        assert trajectory["positions"].shape == (frames, atoms, 3) and finite(trajectory["positions"])

    fuzz_file(run, tmp_path / "t.npz", trajectory_npz, read_trajectory, valid)


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_structure_and_settings_of_engine_jobs(tmp_path, run):
    """The engine command's inputs: a damaged extxyz structure and a damaged settings JSON."""
    from aiida_irspec.engines import jobs

    structure = WATER_DIMER.read_bytes()
    settings_bytes = json.dumps({"ensemble": "nve", "steps": 10, "timestep": 0.5, "stride": 5}).encode()
    path, settings_path = tmp_path / "s.extxyz", tmp_path / "settings.json"

    def check(damages):
        path.write_bytes(damaged(structure, damages))
        settings_path.write_bytes(damaged(settings_bytes, damages))
        try:
            atoms = jobs.read_structure(path)
            assert finite(atoms.positions, atoms.cell.array)
        except IrspecError as error:
            assert str(path) in str(error)
        try:
            options = jobs.read_settings(settings_path, jobs.MD_SETTINGS)
        except IrspecError as error:
            assert str(settings_path) in str(error)
            return
        assert {key: type(value) for key, value in options.items()} == {
            key: type(value) for key, value in jobs.MD_SETTINGS.items()}

    fuzz(run, check, share=0.25)  # ASE's extxyz reader takes up to 1 s on some damaged files


@pytest.fixture(scope="module")
def run_npz():
    buffer = io.BytesIO()
    np.savez(buffer, pdot=np.random.default_rng(0).normal(size=(64, 3)))
    return buffer.getvalue()


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_spectrum_inputs(run_npz, tmp_path, run):
    """``aiida-irspec spectrum``'s readers: a damaged run npz and a damaged experimental CSV."""
    from aiida_irspec.spectra.io import read_experiment_csv, read_run

    csv = b"# experiment\nwavenumber,absorbance\n" + b"".join(b"%d,%.3f\n" % (k, math.sin(k)) for k in range(400, 420))
    npz_path, csv_path = tmp_path / "run.npz", tmp_path / "exp.csv"

    def check(damages):
        npz_path.write_bytes(damaged(run_npz, damages))
        csv_path.write_bytes(damaged(csv, damages))
        try:
            kind, array = read_run(npz_path)
            assert kind in ("pdot", "polarization") and array.shape[1] == 3 and finite(array)
        except IrspecError as error:
            assert str(npz_path) in str(error)
        try:
            frequency, intensity = read_experiment_csv(csv_path)
        except IrspecError as error:
            assert str(csv_path) in str(error)
            return
        assert frequency.shape == intensity.shape and np.all(np.diff(frequency) >= 0)

    fuzz(run, check)


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_model_file(tmp_path, run):
    """PolarizationModel.load on a damaged model file: ModelError, or a model that predicts finite P."""
    import ase.io

    from aiida_irspec.model import PolarizationModel

    good = tmp_path / "good.npz"
    dimer_model().save(good)
    data, frame = good.read_bytes(), ase.io.read(WATER_DIMER)
    path = tmp_path / "model.npz"

    def check(damages):
        path.write_bytes(damaged(data, damages))
        try:
            model = PolarizationModel.load(path)
            polarization = model.predict_polarization([frame])
        except IrspecError as error:
            assert str(path) in str(error) or "species" in str(error)
            return
        assert polarization.shape == (1, 3)

    fuzz(run, check)


# ---- the campaign spec -----------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNS)
def test_fuzz_spec_file_bytes(tmp_path, run):
    """validate_campaign_file on damaged YAML text of a valid campaign file: InputError naming the file or the
    key, or a valid campaign."""
    import yaml

    from aiida_irspec.workflows.campaign import validate_campaign_file

    text = yaml.safe_dump(tiny_campaign_spec("tblite@localhost", "irspec@localhost"), sort_keys=False).encode()

    def valid(result):
        _, atoms, tree = result
        # a damaged file may still be a valid campaign: its missing keys then take the protocol's defaults, and a
        # null time step means the engine protocol's
        timestep = tree["sampling"].get("timestep")
        assert tree["temperature"] > 0 and (timestep is None or timestep > 0) and len(atoms) > 0

    fuzz_file(run, tmp_path / "spec.yaml", text, validate_campaign_file, valid)


_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


@pytest.mark.parametrize("run", RUNS)
def test_fuzz_spec_wrong_types(run):
    """The campaign's settings with any one replaced by a value of any type (NaN, inf, lists, mappings, strings,
    null): InputError or a problem naming that setting, or valid settings."""
    from aiida_irspec.campaign.spec import campaign_problems
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    good = {key: value for key, value in tiny_campaign_spec("tblite@localhost", "irspec@localhost").items()
            if key not in ("name", "protocol", "structure", "codes")}

    def leaves(tree, path=()):
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, path + (key,))
            else:
                yield path + (key,)

    paths = list(leaves(good))

    @budget(run)
    @given(path=st.sampled_from(paths), value=_values)
    def check(path, value):
        overrides = json.loads(json.dumps(good))
        target = overrides
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        try:
            problems = campaign_problems(CampaignWorkChain.get_protocol_tree("fast", overrides))
        except IrspecError as error:
            assert ".".join(path[:2]) in str(error) or path[0] in str(error)
            return
        if problems:
            assert any(".".join(path) in line or line.startswith(path[0]) for line in problems), (path, problems)
            return
        assert math.isfinite(overrides["temperature"]) and overrides["temperature"] > 0

    check()
