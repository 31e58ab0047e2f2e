"""``aiida-irspec engine``: file-based tblite jobs (what the tblite CalcJobs run on a compute node).

Exit codes: 0 success; 2 bad input (missing or malformed structure or settings, bad values, a setting
beyond its limit); 11 periodic cell refused (dipoles and Born charges need a molecule or cluster); 12 the
engine failed (SCF not converged, MD diverged, atoms closer than 0.5 Angstrom, a NaN in a result);
13 the NVE energy drift is too large (the trajectory is still written); 14 an output cannot be written
(checked before the engine starts); 15 the trajectory would need more memory than the limit; 130 / 143
stopped by SIGINT / SIGTERM. A JSON summary is written in every case (atomically, as every output),
unless its own path cannot be written (exit code 14, checked first).
"""

import click

from aiida_irspec.cli.utils import user_errors


@click.group("engine")
def engine():
    """Run an embedded-engine job (tblite GFN2-xTB) on files: Born charges or molecular dynamics."""


def _settings_option(function):
    return click.option("-s", "--settings", type=click.Path(dir_okay=False),
                        help="JSON object of settings (unknown keys are an error).")(function)


def _summary_option(function):
    return click.option("--summary", type=click.Path(dir_okay=False), default="summary.json", show_default=True,
                        help="JSON summary written in every case (status, error kind, message, figures).")(function)


@engine.command("born-charges")
@click.argument("structure", type=click.Path(dir_okay=False))
@_settings_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="born_charges.npz", show_default=True,
              help="npz with born_charges (N, 3, 3) |e|, dipole (3,) |e| A, numbers, positions (A).")
@_summary_option
@user_errors
def born_charges(structure, settings, output, summary):
    """Born charges of the molecule or cluster in STRUCTURE (extxyz) from the tblite dipole.

    Settings: method (GFN2-xTB), charge (0), multiplicity (1), accuracy (1.0), route ("displacement" or
    "field"), displacement (1e-3 A), field (1e-3 V/A).
    """
    from aiida_irspec.engines.jobs import run_born_charges_job

    _check_summary(summary, output, structure, settings)
    _report(run_born_charges_job(structure, settings, output=output, summary=summary), summary)


@engine.command("md")
@click.argument("structure", type=click.Path(dir_okay=False))
@_settings_option
@click.option("-v", "--velocities", type=click.Path(dir_okay=False),
              help=".npy array (N, 3) of initial velocities in A/fs (default: Maxwell-Boltzmann from the seed).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="trajectory.npz", show_default=True,
              help="npz with times (fs), positions (unwrapped, A), velocities (A/fs), cells, energies (eV), "
                   "temperature (K), dipoles, numbers, masses, pbc, info.")
@_summary_option
@click.option("--progress/--no-progress", default=False, help="Print progress lines to stderr.")
@user_errors
def md(structure, settings, velocities, output, summary, progress):
    """Molecular dynamics of STRUCTURE (extxyz) with tblite: Langevin NVT or velocity-Verlet NVE.

    Settings: method, charge, multiplicity, accuracy, ensemble ("nvt"|"nve"), temperature (K), steps,
    timestep (fs), stride, seed, friction (1/ps), record_dipoles, drift_threshold (1/ps),
    fluctuation_threshold.
    """
    from aiida_irspec.engines.jobs import run_md_job

    _check_summary(summary, output, structure, settings, velocities)
    _report(run_md_job(structure, settings, velocities, output=output, summary=summary, progress=progress),
            summary)


def _check_summary(summary, output, *inputs):
    """OutputError (exit 14) before any work when the summary cannot be written there, is one of the inputs or
    is the output file too (the job itself checks the output and says so in the summary)."""
    from aiida_irspec.exceptions import OutputError
    from aiida_irspec.files import check_output, same_file

    check_output(summary, inputs=inputs, option="--summary")
    if output is not None and same_file(summary, output):
        raise OutputError(f"--summary and --output are the same file {summary}")


def _report(error, summary):
    """Print the outcome and leave with the exit code of its error kind."""
    import json

    from aiida_irspec.engines.jobs import EXIT_CODES

    if error == "ok":
        click.echo(f"Done; summary in {summary}")
        return
    message = json.loads(open(summary).read()).get("message", "")
    click.secho(f"Error ({error}): {message}", fg="red", err=True)
    raise SystemExit(EXIT_CODES[error])
