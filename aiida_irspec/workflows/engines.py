"""Registry of the engine implementations behind the engine-agnostic WorkChains.

``ENGINES[engine][task]`` is the entry-point name of the process that does ``task`` (``"born_charges"``
or ``"md"``) with ``engine``; every such process class has the classmethod
``get_builder_from_protocol(code, structure, protocol="moderate", overrides=None, options=None,
**task_kwargs)`` and the outputs of the agnostic WorkChain (``born_charges``; or ``trajectory``,
``final_structure``, ``final_velocities``).
"""

from aiida_irspec.engines.jobs import TRAJECTORY_FILE

ENGINES = {
    "tblite": {"born_charges": "irspec.tblite.born_charges", "md": "irspec.tblite.md"},
    "vasp": {"born_charges": "irspec.vasp.born_charges", "md": "irspec.vasp.md"},
}
TASKS = ("born_charges", "md")

# entry-point group of each engine's processes: tblite's are CalcJobs, VASP's are WorkChains
GROUPS = {"tblite": "aiida.calculations", "vasp": "aiida.workflows"}

#: The trajectory file in the ``remote_folder`` of each engine's MD process, where it is in the npz format that
#: ``aiida-irspec pdot`` reads as it is (tblite: the ``engine md`` output). Engines not listed here, or whose MD
#: process gives no ``remote_folder``, send their stored TrajectoryData to the dP/dt jobs instead.
REMOTE_TRAJECTORY = {"tblite": TRAJECTORY_FILE}


def engine_process(engine, task):
    """The process class that runs ``task`` with ``engine``.

    :raises ValueError: for an unknown engine or task.
    """
    from aiida.plugins.entry_point import load_entry_point

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(sorted(ENGINES))}")
    if task not in ENGINES[engine]:
        raise ValueError(f"engine {engine!r} has no {task!r} process; tasks: {', '.join(sorted(ENGINES[engine]))}")
    return load_entry_point(GROUPS[engine], ENGINES[engine][task])
