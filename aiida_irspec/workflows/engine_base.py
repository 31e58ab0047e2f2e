"""What the engine-agnostic WorkChains share: the common inputs, their checks, the dispatch by engine, the outputs.

In the spirit of aiida-common-workflows: the same inputs and outputs whatever the engine. The WorkChain asks
the engine's WorkChain (the adapter's ``processes``, :mod:`aiida_irspec.workflows.engines`) for a builder with
``get_builder_from_protocol(code, structure, protocol, overrides=engine_overrides, options, **task_kwargs,
**extras)``, runs it and passes its outputs on. Restarts (wall time, crashes) are the engine WorkChain's
business. Engine-specific extras go in the ``engine_inputs`` namespace: Data nodes whose plain values (Str, Int,
Float, Bool, Dict, List) are handed over as Python values and any other node (SinglefileData, RemoteData, ...)
as it is.

Checked at submission, before any node is stored (the inputs validator, one line each): an unknown engine; a
code of another engine (the engine of a code is that of its ``default_calc_job_plugin``); a structure the engine
does not take (tblite: no periodic cell; VASP: a periodic cell); ``engine_inputs`` the engine's task does not
take; an engine protocol the engine does not have.

Exit codes: 400 ERROR_INVALID_ENGINE_INPUTS (the engine refused to build its inputs); 401
ERROR_ENGINE_FAILED (the engine process did not finish successfully: its exit status is in the message,
and whatever outputs it made are still attached); 402 ERROR_ENGINE_OUTPUT_MISSING.
"""

import collections.abc
import functools

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_irspec.exceptions import InputError
from aiida_irspec.settings import did_you_mean
from aiida_irspec.workflows.engines import ENGINES, check_engine_inputs, engine_of_code, get_engine
from aiida_irspec.workflows.protocols import ProtocolMixin, recursive_merge
from aiida_irspec.workflows.resumable import SubmitOnce


def fill_builder(builder, values, path=""):
    """Set the nested mapping ``values`` on the ProcessBuilder (namespace) ``builder``, port by port.

    Plain values of database ports become nodes (``orm.to_aiida_type``); nodes and the values of ``metadata``
    and other non-database ports are set as they are; each port's validator runs as the value is set.

    :raises InputError: for an unknown port or a value a port refuses, naming the dotted key.
    """
    from aiida.engine.processes.ports import PortNamespace

    namespace = builder._port_namespace
    for key, value in values.items():
        dotted = f"{path}{key}"
        port = namespace.get(key)
        if port is None and not namespace.dynamic:
            raise InputError(f"unknown input {dotted!r}{did_you_mean(key, namespace)}; "
                             f"inputs here: {', '.join(sorted(namespace))}")
        if isinstance(port, PortNamespace) and isinstance(value, collections.abc.Mapping):
            fill_builder(builder[key], value, f"{dotted}.")
            continue
        as_is = isinstance(value, orm.Node) or getattr(port, "is_metadata", False) or getattr(port, "non_db", False)
        try:
            builder[key] = value if as_is else orm.to_aiida_type(value)
        except (ValueError, TypeError, NotImplementedError) as error:
            raise InputError(f"input {dotted!r}: {error}") from error


def plain(node):
    """The Python value of a Str/Int/Float/Bool/Dict/List node; any other node as it is."""
    if isinstance(node, orm.Dict):
        return node.get_dict()
    if isinstance(node, orm.List):
        return node.get_list()
    if isinstance(node, (orm.Str, orm.Int, orm.Float, orm.Bool)):
        return node.value
    return node


def plain_inputs(inputs):
    """Nested port values (a namespace of nodes) as plain Python values (:func:`plain`); other nodes and
    non-database values dropped."""
    result = {}
    for key, value in inputs.items():
        if isinstance(value, orm.Node):
            value = plain(value)
            if not isinstance(value, orm.Node):
                result[key] = value
        elif hasattr(value, "items"):
            result[key] = plain_inputs(value)
    return result


def _validate_engine(value, _):
    try:
        get_engine(value.value)
    except InputError as error:
        return str(error)
    return None


def _validate_inputs(task, inputs, ctx):
    """The engine takes the code, the structure, the extras and the protocol (ports absent here, e.g. excluded
    where the namespace is exposed, are not checked)."""
    if "engine" not in inputs:
        return None
    name = inputs["engine"].value
    problem = check_engine_inputs(name, task, code=inputs.get("code"), structure=inputs.get("structure"),
                                  extras=inputs.get("engine_inputs", {}))
    if problem or "protocol" not in inputs:
        return problem
    process = get_engine(name).process(task)
    if not hasattr(process, "get_available_protocols"):
        return None
    level, alias = ProtocolMixin._split_protocol_file_name(inputs["protocol"].value)
    try:
        available = process.get_available_protocols(alias)
    except (InputError, OSError) as error:
        return str(error)
    alias_of = getattr(process, "_check_if_alias", lambda _: None)  # aiida-vasp's names: moderate -> balanced, ...
    if level not in available and alias_of(level) not in available:
        return (f"the {name} engine has no protocol {level!r}{did_you_mean(level, available)}: choose from "
                f"{', '.join(available)}")
    return None


class EngineWorkChain(ProtocolMixin, SubmitOnce, WorkChain):
    """Run one task with the chosen engine. Subclasses set ``_task``, ``_task_outputs`` and ``_protocol_tag``
    and may add inputs that they turn into task keyword arguments in :meth:`task_kwargs`."""

    _task = None
    _task_outputs = ()  # (name, required)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The structure.")
        spec.input("engine", valid_type=orm.Str, validator=_validate_engine, serializer=orm.to_aiida_type,
                   help=f"The engine: one of {', '.join(ENGINES)} "
                        f"({'; '.join(f'{e.name}: {e.takes}' for e in ENGINES.values())}).")
        spec.input("code", valid_type=orm.AbstractCode, help="The engine's Code (its default CalcJob plugin names "
                                                             "the engine: irspec.tblite.* or vasp.*).")
        spec.input("protocol", valid_type=orm.Str, required=False, serializer=orm.to_aiida_type,
                   help="Protocol level of the engine's process (fast, moderate, precise; default: the engine's).")
        spec.input("engine_overrides", valid_type=orm.Dict, required=False, serializer=orm.to_aiida_type,
                   help="Overrides of the engine's protocol, mirroring the ports of the engine's WorkChain (tblite: "
                        "{'parameters': {...}}; VASP: its INCAR 'parameters', 'settings', ...).")
        spec.input("options", valid_type=orm.Dict, required=False, serializer=orm.to_aiida_type,
                   help="metadata.options of the engine's calculations (resources, max_wallclock_seconds, ...).")
        spec.input_namespace("engine_inputs", valid_type=orm.Data, dynamic=True, required=False,
                             help="Engine-specific extras passed to the engine's get_builder_from_protocol as keyword "
                                  "arguments (" + "; ".join(f"{e.name}: {', '.join(e.extras[cls._task]) or 'none'}"
                                                            for e in ENGINES.values()) + ").")
        spec.inputs.validator = functools.partial(_validate_inputs, cls._task)
        spec.outline(cls.run_engine, cls.results)
        spec.exit_code(400, "ERROR_INVALID_ENGINE_INPUTS", message="the {engine} engine refused the inputs: {error}")
        spec.exit_code(401, "ERROR_ENGINE_FAILED",
                       message="the {engine} {task} process <{pk}> failed with exit status {status}: {message}")
        spec.exit_code(402, "ERROR_ENGINE_OUTPUT_MISSING",
                       message="the {engine} {task} process <{pk}> finished without the output {output}")

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, *, engine=None, options=None,
                                  **engine_inputs):
        """A builder from a level of ``protocols/<_protocol_tag>.yaml`` (which picks the engine's level).

        :param code: the engine's Code; its ``default_calc_job_plugin`` gives the engine unless ``engine`` is given.
        :param structure: StructureData (the engine checks that it takes it when the builder is submitted).
        :param protocol: ``fast``, ``moderate`` or ``precise`` (default: the file's default), or ``LEVEL@NAME``.
        :param overrides: dict (or path of a YAML file) mirroring the ports, e.g. ``{"steps": 2000, "stride": 10,
            "engine_overrides": {"parameters": {...}}}``.
        :param engine: ``"tblite"`` or ``"vasp"``.
        :param options: ``metadata.options`` of the engine's calculations, merged over the protocol's.
        :param engine_inputs: the engine's extras (VASP: potential_family, potential_mapping, kpoints_distance,
            ml_ff), plain values or nodes.
        :raises InputError: for an unknown protocol, input or engine, or a code of no engine.
        """
        engine = get_engine(engine) if engine is not None else engine_of_code(code)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if options:
            inputs["options"] = recursive_merge(inputs.get("options", {}), options)
        if engine_inputs:
            inputs["engine_inputs"] = {**inputs.get("engine_inputs", {}), **engine_inputs}
        builder = cls.get_builder()
        fill_builder(builder, {"code": code, "structure": structure, "engine": engine.name, **inputs})
        return builder

    def task_kwargs(self):
        """The task's own keyword arguments for ``get_builder_from_protocol`` (none by default)."""
        return {}

    def run_engine(self):
        """Build the engine's inputs from its protocol and run its WorkChain."""
        engine = get_engine(self.inputs.engine.value)
        process = engine.process(self._task)
        extras = {name: plain(node) for name, node in self.inputs.get("engine_inputs", {}).items()}
        try:
            builder = process.get_builder_from_protocol(
                self.inputs.code, self.inputs.structure,
                protocol=self.inputs.protocol.value if "protocol" in self.inputs else None,
                overrides=self.inputs.engine_overrides.get_dict() if "engine_overrides" in self.inputs else None,
                options=self.inputs.options.get_dict() if "options" in self.inputs else None,
                **self.task_kwargs(), **extras)
        except (ValueError, TypeError) as error:
            self.report(f"building the {engine.name} inputs failed: {error}")
            return self.exit_codes.ERROR_INVALID_ENGINE_INPUTS.format(engine=engine.name, error=str(error))
        builder.metadata.call_link_label = f"{engine.name}_{self._task}"
        node = self.submit(builder)
        self.report(f"launched {process.__name__}<{node.pk}> ({engine.name})")
        return ToContext(engine_process=node)

    def results(self):
        """Pass the engine's outputs on; fail with 401 / 402 when it failed or an output is missing."""
        node = self.ctx.engine_process
        engine = self.inputs.engine.value
        for name, required in self._task_outputs:
            if name in node.outputs:
                self.out(name, node.outputs[name])
            elif required and node.is_finished_ok:
                return self.exit_codes.ERROR_ENGINE_OUTPUT_MISSING.format(engine=engine, task=self._task, pk=node.pk,
                                                                   output=name)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_ENGINE_FAILED.format(engine=engine, task=self._task, pk=node.pk,
                                                              status=node.exit_status, message=node.exit_message)
        return None
