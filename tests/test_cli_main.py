"""The ``aiida-irspec`` group: its global -p/--profile and -v/--verbosity (verdi's), help without importing AiiDA,
suggestions for a mistyped command, and the profile reaching every AiiDA command."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from aiida_irspec.cli import VERBOSITY_LEVELS, cli

NO_AIIDA = """
import sys
from click.testing import CliRunner
from aiida_irspec.cli import cli
for arguments in (["--help"], ["fit", "--help"], ["spectrum", "--help"], ["pdot", "--help"], ["engine", "--help"]):
    assert CliRunner().invoke(cli, arguments).exit_code == 0, arguments
print(sorted(m for m in sys.modules if m.split(".")[0] == "aiida"))
"""


def test_help_and_file_commands_do_not_import_aiida():
    out = subprocess.run([sys.executable, "-c", NO_AIIDA], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command_with_its_summary():
    out = CliRunner().invoke(cli, ["--help"])
    assert out.exit_code == 0
    for name, summary in (("campaign", "IR-spectrum campaigns"), ("fit", "Fit a polarization model"),
                          ("demo", "Set up AiiDA if needed"), ("import-vasp", "Import the VASP Born charges")):
        line = next(line for line in out.output.splitlines() if line.strip().startswith(name + " "))
        assert summary in line
    assert "-p, --profile PROFILE" in out.output and "-v, --verbosity" in out.output


def test_verbosity_levels_are_aiidas():
    from aiida.common.log import LOG_LEVELS

    assert VERBOSITY_LEVELS == tuple(level.lower() for level in LOG_LEVELS)


def test_mistyped_command_gets_suggestions():
    out = CliRunner().invoke(cli, ["campain"])
    assert out.exit_code == 2 and "`campain` is not a aiida-irspec command" in out.output and "campaign" in out.output
    out = CliRunner().invoke(cli, ["campaign", "stauts"])
    assert out.exit_code == 2 and "status" in out.output


def test_profile_is_global_and_not_a_subcommand_option(aiida_profile):
    runner = CliRunner()
    out = runner.invoke(cli, ["-p", aiida_profile.name, "campaign", "status", "999999"])
    assert out.exit_code == 2 and "no WorkflowNode found with ID<999999>" in out.output
    out = runner.invoke(cli, ["campaign", "status", "999999", "-p", aiida_profile.name])
    assert out.exit_code == 2 and "No such option: -p" in out.output
    out = runner.invoke(cli, ["-p", "no-such-profile", "campaign", "status", "1"])
    assert out.exit_code == 3 and "no usable AiiDA profile" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("level", ["debug", "REPORT", "warning"])
def test_verbosity_is_accepted_before_any_command(aiida_profile, level):
    out = CliRunner().invoke(cli, ["-v", level, "-p", aiida_profile.name, "campaign", "list"])
    assert out.exit_code == 0, out.output
    assert "water_dimer_tblite" in out.output
