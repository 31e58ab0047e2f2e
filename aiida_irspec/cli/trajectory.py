"""``aiida-irspec pdot``: dP/dt (or P) of a polarization model along a trajectory file.

This is what the ``irspec.predict_pdot`` CalcJob runs on the computer where the trajectory is stored.
Exit codes: 0 success; 2 bad input (missing or malformed file, model that does not know the species).
"""

import click

from aiida_irspec.cli.utils import user_errors


@click.command("pdot")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("trajectory", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="pdot.npz", show_default=True,
              help="npz with times (fs) and pdot (|e| A/fs) or polarization (|e| A).")
@click.option("--route", type=click.Choice(["velocity", "polarization"]), default="velocity", show_default=True,
              help="dP/dt from the velocities, or P at every frame (dP/dt by finite differences later).")
@click.option("--timestep", type=float, help="fs between frames (only for trajectories that are not npz files).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Frames predicted at once (bounds the memory).")
@user_errors
def pdot(model, trajectory, output, route, timestep, batch_size):
    """Predict dP/dt (or P) with MODEL along TRAJECTORY (npz from `engine md`, or vasprun.xml, XDATCAR, extxyz)."""
    import numpy as np

    from aiida_irspec.campaign.pdot import predict_along, read_trajectory
    from aiida_irspec.model import PolarizationModel

    arrays = predict_along(PolarizationModel.load(model), read_trajectory(trajectory, timestep), route, batch_size)
    np.savez_compressed(output, **arrays)
    click.echo(f"{len(arrays['times'])} frames -> {output}")
