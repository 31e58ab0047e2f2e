"""Engine adapters: what each engine behind the engine-agnostic WorkChains runs, takes and adds.

One frozen :class:`Engine` record per engine (``ENGINES``): the WorkChain entry point of each task
(``"born_charges"``, ``"md"``), the structures it takes (with a check that says why not), whether its MD can
record the engine's own dipole and the ``engine_overrides`` that ask for it, the file of its MD trajectory in
the run folder, the extras (``engine_inputs``) each task accepts, the code plugins that belong to it and its
range of exit codes. Every task process is a WorkChain with the classmethod
``get_builder_from_protocol(code, structure, protocol=None, overrides=None, options=None, **task_kwargs)``
and the outputs of the agnostic WorkChain (``born_charges``; or ``trajectory``, ``final_structure``,
``final_velocities``). No AiiDA import at module level: the records are read by validators and the docs.
"""

import dataclasses
import types
import typing

from aiida_irspec.engines.jobs import TRAJECTORY_FILE
from aiida_irspec.exceptions import InputError
from aiida_irspec.settings import did_you_mean

TASKS = ("born_charges", "md")


def _molecule_or_cluster(structure):
    """tblite: no periodic direction (its dipole, hence its Born charges, has no meaning in a periodic cell)."""
    pbc = tuple(bool(flag) for flag in structure.pbc)
    if any(pbc):
        return (f"tblite takes molecules and clusters, not periodic cells (pbc {pbc}): set pbc to False, or use "
                f"the vasp engine")
    return None


def _periodic_cell(structure):
    """VASP: periodic in all three directions, with a cell of nonzero volume."""
    pbc = tuple(bool(flag) for flag in structure.pbc)
    if not all(pbc):
        return (f"VASP needs a periodic cell (pbc {pbc}): put a molecule in a box with pbc True, or use the "
                f"tblite engine")
    if not structure.get_cell_volume() > 1e-6:
        return "VASP needs a cell of nonzero volume"
    return None


@dataclasses.dataclass(frozen=True)
class Engine:
    """What one engine runs, takes and adds (see the module doc).

    name: the engine's name (the ``engine`` input). processes: task -> entry point (``aiida.workflows``) of its
    WorkChain. takes: the structures it takes, in words. check_structure: callable(StructureData) -> message
    why the engine cannot take it, or None. dipole_overrides: the ``engine_overrides`` that make its MD record
    the engine's own dipole at each stored frame (None: it cannot). remote_trajectory: the file of its MD run
    folder that ``aiida-irspec pdot`` reads as it is (None: the stored TrajectoryData is sent). extras: task ->
    names of the ``engine_inputs`` its builder takes. plugins: prefixes of the ``default_calc_job_plugin`` of
    its codes. exit_codes: the range of its own exit codes (the scheduler's 100-199 are passed on besides).
    """

    name: str
    processes: typing.Mapping[str, str]
    takes: str
    check_structure: typing.Callable
    dipole_overrides: typing.Optional[typing.Mapping]
    remote_trajectory: typing.Optional[str]
    extras: typing.Mapping[str, tuple]
    plugins: tuple
    exit_codes: range

    def process(self, task):
        """The WorkChain class that runs ``task`` with this engine.

        :raises InputError: for an unknown task.
        """
        from aiida.plugins import WorkflowFactory

        if task not in self.processes:
            raise InputError(f"engine {self.name!r} has no {task!r} process; tasks: {', '.join(self.processes)}")
        return WorkflowFactory(self.processes[task])

    def with_dipoles(self, engine_overrides=None):
        """``engine_overrides`` (a dict) with what makes the MD record the engine's own dipole merged in.

        :raises InputError: when the engine's MD cannot record its dipole.
        """
        from aiida_irspec.workflows.protocols import recursive_merge

        if self.dipole_overrides is None:
            raise InputError(f"the {self.name} engine cannot record its own dipole along MD")
        return recursive_merge(engine_overrides or {}, self.dipole_overrides)

    def owns_plugin(self, plugin):
        """True when a code of CalcJob plugin ``plugin`` (an entry-point name) is one of this engine's."""
        return any(plugin.startswith(prefix) for prefix in self.plugins)


ENGINES = types.MappingProxyType({engine.name: engine for engine in (
    Engine(name="tblite", processes={"born_charges": "irspec.tblite.born_charges", "md": "irspec.tblite.md"},
           takes="molecules and clusters (no periodic direction)", check_structure=_molecule_or_cluster,
           dipole_overrides={"parameters": {"record_dipoles": True}}, remote_trajectory=TRAJECTORY_FILE,
           extras={"born_charges": (), "md": ()}, plugins=("irspec.tblite.",), exit_codes=range(310, 340)),
    Engine(name="vasp", processes={"born_charges": "irspec.vasp.born_charges", "md": "irspec.vasp.md"},
           takes="periodic cells", check_structure=_periodic_cell, dipole_overrides=None, remote_trajectory=None,
           extras={"born_charges": ("potential_family", "potential_mapping", "kpoints_distance"),
                   "md": ("potential_family", "potential_mapping", "kpoints_distance", "ml_ff")},
           plugins=("vasp.", "irspec.vasp."), exit_codes=range(340, 370)),
)})


def get_engine(name):
    """The :class:`Engine` called ``name``.

    :raises InputError: for an unknown engine (with the known ones).
    """
    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r}{did_you_mean(name, ENGINES)}; known: {', '.join(ENGINES)}")
    return ENGINES[name]


def engine_of_code(code):
    """The :class:`Engine` whose code ``code`` is, from its ``default_calc_job_plugin`` (``vasp.*`` -> vasp,
    ``irspec.tblite.*`` -> tblite).

    :raises InputError: when the code has no default plugin or one of no engine.
    """
    plugin = code.default_calc_job_plugin
    if not plugin:
        raise InputError(f"the code {code.full_label} has no default CalcJob plugin, so its engine is unknown: give "
                         f"the engine, or create the code with --default-calc-job-plugin irspec.tblite.md (tblite) "
                         f"or vasp.vasp (VASP)")
    for engine in ENGINES.values():
        if engine.owns_plugin(plugin):
            return engine
    raise InputError(f"the code {code.full_label} (plugin {plugin}) is not the code of an engine: engine codes have "
                     f"the plugin irspec.tblite.* (tblite) or vasp.* (VASP)")


def check_engine_inputs(engine_name, task, code=None, structure=None, extras=()):
    """Why ``engine_name`` cannot run ``task`` with ``code``, ``structure`` and the ``engine_inputs`` names
    ``extras`` (each checked when given), as one line; None when it can."""
    try:
        engine = get_engine(engine_name)
    except InputError as error:
        return str(error)
    if code is not None:
        try:
            owner = engine_of_code(code)
        except InputError as error:
            return str(error)
        if owner is not engine:
            return (f"the code {code.full_label} is a {owner.name} code (plugin {code.default_calc_job_plugin}), not "
                    f"a {engine.name} one")
    if structure is not None:
        problem = engine.check_structure(structure)
        if problem:
            return problem
    unknown = sorted(set(extras) - set(engine.extras[task]))
    if unknown:
        known = ", ".join(engine.extras[task]) or "none"
        return (f"the {engine.name} engine takes no engine_inputs {', '.join(unknown)}"
                f"{did_you_mean(unknown[0], engine.extras[task])} for {task}; it takes: {known}")
    return None
