"""`aiida-irspec spectrum` on npz files: CSV contents and units, plot, bands, clean errors for bad input."""

import numpy as np
import pytest
import scipy.signal
from click.testing import CliRunner

from aiida_irspec.cli import cli
from aiida_irspec.spectra.io import read_experiment_csv, read_run, read_spectrum_csv


@pytest.fixture
def runs(tmp_path):
    """Four runs of a damped oscillator-like current: two as pdot, two as polarization."""
    rng = np.random.default_rng(4)
    paths = []
    for k in range(4):
        pdot = scipy.signal.lfilter([1.0], [1.0, -1.9 * np.cos(0.2), 0.9025], rng.normal(size=(6000, 3)), axis=0)
        path = tmp_path / f"run{k}.npz"
        if k < 2:
            np.savez(path, pdot=pdot)
        else:
            np.savez(path, polarization=np.cumsum(pdot, axis=0) * 0.5)
        paths.append(str(path))
    return paths


def invoke(*args):
    return CliRunner().invoke(cli, ["spectrum", *map(str, args)], catch_exceptions=False)


def test_spectrum_cli_writes_csv_with_units_and_plot(runs, tmp_path):
    csv, png = tmp_path / "s.csv", tmp_path / "s.png"
    experiment = tmp_path / "exp.csv"
    experiment.write_text("wavenumber,intensity\n500,0.1\n1000,1.0\n2000,0.3\n")
    result = invoke(*runs, "--dt", 0.5, "--temperature", 300, "--volume", 800, "--window", "hann", "--width", 30,
                    "--band", "main=1000:3000", "--bootstrap", 50, "--seed", 1, "-o", csv, "--plot", png,
                    "--experiment", experiment)
    assert result.exit_code == 0, result.output
    table, comments = read_spectrum_csv(csv)
    assert list(table) == ["frequency_cm1", "absorption", "stderr", "lower", "upper", "bootstrap_lower",
                           "bootstrap_upper"]
    assert any("cm^-1" in line and line.startswith("units:") for line in comments)
    assert any(line.startswith("window:") and "hann" in line for line in comments)
    assert any(line.startswith("quantum_correction:") and "none" in line for line in comments)
    assert any(line.startswith("band ") and '"main"' in line for line in comments)
    assert np.allclose(table["upper"] - table["absorption"], 2 * table["stderr"], rtol=1e-6, atol=1e-3)
    assert np.all(table["stderr"][1:] > 0)
    # the band integral printed is that of the CSV
    assert "main" in result.output and png.stat().st_size > 10_000
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_spectrum_cli_molecules_km_mol_and_quantum(runs, tmp_path):
    csv = tmp_path / "m.csv"
    result = invoke(*runs[:2], "--dt", 0.5, "--temperature", 100, "--molecules", 3, "--quantum-correction",
                    "standard", "--max-frequency", 4000, "-o", csv)
    assert result.exit_code == 0, result.output
    table, comments = read_spectrum_csv(csv)
    assert table["frequency_cm1"][-1] <= 4000
    assert any("km/mol" in line and line.startswith("units:") for line in comments)
    assert "km/mol" in result.output


@pytest.mark.parametrize("content,message", [
    ({"velocities": np.ones((100, 3))}, "expected an array 'pdot' or 'polarization'"),
    ({"pdot": np.ones((100, 4))}, "shape (steps, 3)"),
    ({"pdot": np.ones((4, 3))}, "at least"),
    ({"polarization": np.full((100, 3), np.nan)}, "NaN"),
])
def test_spectrum_cli_bad_runs_exit_2_without_traceback(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    result = CliRunner().invoke(cli, ["spectrum", str(path), "--dt", "1", "--temperature", "300", "--volume", "10",
                                      "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_choices_match_the_library():
    from aiida_irspec.cli.spectrum import QUANTUM
    from aiida_irspec.spectra import QUANTUM_CORRECTIONS

    assert QUANTUM == QUANTUM_CORRECTIONS


def test_spectrum_cli_needs_volume_or_molecules(runs, tmp_path):
    result = CliRunner().invoke(cli, ["spectrum", runs[0], "--dt", "1", "--temperature", "300", "-o",
                                      str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "exactly one of --volume" in result.output
    for bad in (["--band", "bend:1400-1800"], ["--bootstrap", "-3"]):
        result = CliRunner().invoke(cli, ["spectrum", runs[0], "--dt", "1", "--temperature", "300", "--volume", "9",
                                          "-o", str(tmp_path / "x.csv"), *bad])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_read_run_and_experiment_files(tmp_path):
    text = tmp_path / "not.npz"
    text.write_text("hello")
    with pytest.raises(Exception, match="npz"):
        read_run(text)
    # found by the fuzz: a member whose .npy header does not parse (numpy raises SyntaxError / TokenError)
    import zipfile

    broken = tmp_path / "broken.npz"
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (}"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("pdot.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\n")
    with pytest.raises(Exception, match="broken.npz"):
        read_run(broken)
    both = tmp_path / "both.npz"
    np.savez(both, pdot=np.ones((20, 3)), polarization=np.zeros((20, 3)))
    assert read_run(both)[0] == "pdot"
    exp = tmp_path / "exp.csv"
    exp.write_text("# measured\nnu;absorbance\n3000;2\n1000;1\n")
    nu, value = read_experiment_csv(exp)
    assert nu.tolist() == [1000.0, 3000.0] and value.tolist() == [1.0, 2.0]
    exp.write_text("1000,1\nabc,2\n")
    with pytest.raises(Exception, match="line 2"):
        read_experiment_csv(exp)
    exp.write_text("1000,1\n1100,2\nnan,3\n")  # found by the fuzz: NaN sorted to the end and passed
    with pytest.raises(Exception, match="line 3"):
        read_experiment_csv(exp)
