"""``aiida-irspec pdot``: dP/dt (or P) of a polarization model along a trajectory file.

This is what the ``irspec.predict_pdot`` CalcJob runs on the computer where the trajectory is stored.
Exit codes: 0 success; 2 bad input (missing or malformed file, model that does not know the species, a
prediction that is not finite); 14 the output cannot be written (checked before any work; a previous file
is kept); 130 / 143 stopped by SIGINT / SIGTERM.
"""

import click

from aiida_irspec.cli.utils import InputFile, user_errors


@click.command("pdot")
@click.argument("model", type=InputFile())
@click.argument("trajectory", type=InputFile())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="pdot.npz", show_default=True,
              help="npz with times (fs) and pdot (|e| A/fs) or polarization (|e| A), route (the one taken), numbers "
                   "(the atoms) and, for periodic cells, volume (mean, A^3): `spectrum` checks its options against "
                   "them.")
@click.option("--route", type=click.Choice(["auto", "velocity", "polarization"]), default="auto", show_default=True,
              help="dP/dt from the velocities (two expansions per frame), or P at every frame (one; dP/dt by finite "
                   "differences later); auto: P when the frames are at most 1 fs apart or have no velocities.")
@click.option("--timestep", type=float, help="fs between frames (only for trajectories that are not npz files).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Frames predicted at once (bounds the memory).")
@user_errors
def pdot(model, trajectory, output, route, timestep, batch_size):
    """Predict dP/dt (or P) with MODEL along TRAJECTORY (npz from `engine md`, or vasprun.xml, XDATCAR, extxyz).

    An npz trajectory is streamed through the model in chunks of frames: memory does not grow with its length."""
    from aiida_irspec.campaign.pdot import open_trajectory, predict_along
    from aiida_irspec.exceptions import require_finite
    from aiida_irspec.files import check_output, savez
    from aiida_irspec.model import PolarizationModel

    check_output(output, inputs=[model, trajectory], option="--output")
    fitted = PolarizationModel.load(model)
    with open_trajectory(trajectory, timestep) as frames:
        arrays = predict_along(fitted, frames, route, batch_size)
    require_finite(arrays, "the prediction")
    savez(output, compressed=True, **arrays)
    click.echo(f"{len(arrays['times'])} frames -> {output} (route {arrays['route']})")
