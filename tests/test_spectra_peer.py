"""Slow: the peer check of benchmarks/tblite_water_ir.py on a short water run (MD band positions within 2% and
integrated intensities within 10% of ASE's harmonic Infrared, GFN2-xTB)."""

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "tblite_water_ir.py"


@pytest.mark.slow
def test_water_md_spectrum_matches_harmonic_infrared(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--systems", "H2O", "--runs", "1", "--steps", "8000",
                             "--width", "30", "--workdir", str(tmp_path)], capture_output=True, text=True,
                            timeout=900)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and summary["pass"], result.stdout
    assert summary["max_abs_position_error"] < 0.02 and summary["max_abs_intensity_error"] < 0.10
