"""Composing a WorkChain of children, in the way of aiida-vibroscopy and aiida-quantumespresso: exposed inputs
that stay closed to unknown keys, a child's builder turned into a namespace's inputs, and overrides checked
against the ports before anything is built."""

from aiida_irspec.exceptions import InputError


def expose_closed(spec, process_class, namespace, exclude=(), **kwargs):
    """``spec.expose_inputs(process_class, namespace, exclude)``, with every exposed namespace as open to unknown
    keys as in the child: plumpy's absorb sets the namespace's ``valid_type`` after its ``dynamic`` flag, which
    makes every absorbed namespace dynamic, so a misspelt input would be taken silently."""
    spec.expose_inputs(process_class, namespace=namespace, exclude=exclude, **kwargs)
    _copy_dynamic(process_class.spec().inputs, spec.inputs[namespace])


def _copy_dynamic(source, target):
    from plumpy.ports import PortNamespace

    target.dynamic = source.dynamic
    for name, port in target.items():
        if isinstance(port, PortNamespace) and name in source:
            _copy_dynamic(source[name], port)


def check_override_keys(process_class, inputs, path=""):
    """Raise :class:`InputError` naming every key of ``inputs`` (protocol inputs with overrides merged) that is
    no input port of ``process_class``, with a "did you mean"; the values of ``Dict`` ports are left to their
    validators."""
    from aiida_irspec.settings import did_you_mean

    problems = []
    _unknown_keys(process_class.spec().inputs, inputs, path, problems, did_you_mean)
    if problems:
        raise InputError(f"invalid inputs of {process_class.__name__}:\n  " + "\n  ".join(problems))


def _unknown_keys(namespace, values, path, problems, did_you_mean):
    from plumpy.ports import PortNamespace

    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in namespace:
            if not namespace.dynamic:
                known = sorted(name for name in namespace if name != "metadata")
                problems.append(f"{where}: unknown input{did_you_mean(key, known)}; known: {', '.join(known)}")
            continue
        port = namespace[key]
        if isinstance(port, PortNamespace) and isinstance(value, dict):
            _unknown_keys(port, value, where, problems, did_you_mean)


def exposed_builder_inputs(builder, exclude=()):
    """The inputs of a child's ``builder`` for a namespace that exposes its ports: everything set, but
    ``metadata`` and the ports in ``exclude`` (which the parent sets itself)."""
    return {key: value for key, value in builder._inputs(prune=True).items()  # noqa: SLF001 - aiida's own accessor
            if key not in exclude and key != "metadata"}
