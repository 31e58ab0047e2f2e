"""``versioned_calcfunction``: a calcfunction whose cache key holds the version of the package's numerics.

AiiDA's cache key (hash) of a calcfunction covers its inputs, the source file of its module and the
package version, but not the code it calls (:mod:`aiida_irspec.model`, :mod:`aiida_irspec.spectra`, ...):
after a change there, a rerun with caching on would reuse results of the old code. This decorator gives the
function one more input, ``numerics_version`` (Int, by default :data:`aiida_irspec.NUMERICS_VERSION`, read
at each call), which is hashed like any input; callers pass nothing new. The function itself does not see
it. The node is otherwise that of a plain ``@calcfunction``: same name, module, source file and lines.

The function runs with BLAS and OpenMP libraries on one thread, so that its results do not depend on the
caller's thread variables (measured: the ZrO2 fit's predictions differ by up to 2e-12 |e| between one and two
OpenBLAS threads; with a fixed count they are bit-identical).

With those inputs and the ``CACHE_VERSION`` of the plugin's CalcJobs and parsers, the plugin's calculations
are safe to cache: ``CACHED_PROCESSES`` is the pattern that switches caching on for them alone
(``verdi config set caching.enabled_for aiida.calculations:irspec.*``; docs/reproducibility.md).
"""

import functools
import inspect
import types

from aiida import orm
from aiida.engine import calcfunction

VERSION_INPUT = "numerics_version"
CACHED_PROCESSES = "aiida.calculations:irspec.*"  # every CalcJob and calcfunction entry point of the plugin


def numerics_version():
    """The default of the ``numerics_version`` input: Int(:data:`aiida_irspec.NUMERICS_VERSION`)."""
    import aiida_irspec

    return orm.Int(aiida_irspec.NUMERICS_VERSION)


def versioned_calcfunction(function):
    """``@calcfunction`` of ``function`` plus the keyword-only input ``numerics_version`` (see the module)."""
    signature = inspect.signature(function)
    if VERSION_INPUT in signature.parameters:
        raise TypeError(f"{function.__qualname__} already has a parameter {VERSION_INPUT!r}")
    parameters = list(signature.parameters.values())
    position = next((i for i, p in enumerate(parameters) if p.kind is p.VAR_KEYWORD), len(parameters))
    parameters.insert(position, inspect.Parameter(VERSION_INPUT, inspect.Parameter.KEYWORD_ONLY,
                                                  default=numerics_version, annotation=orm.Int))

    from threadpoolctl import threadpool_limits

    version_input = VERSION_INPUT

    def call(*args, **kwargs):
        del kwargs[version_input]
        with threadpool_limits(limits=1):
            return function(*args, **kwargs)

    # AiiDA stores the source file (hashed) and the module of the function it is given from
    # ``__code__.co_filename`` and ``__globals__``: give the wrapper those of ``function`` (``call`` uses
    # closure variables only, no globals).
    wrapper = types.FunctionType(call.__code__.replace(co_filename=function.__code__.co_filename),
                                 function.__globals__, function.__name__, None, call.__closure__)
    functools.update_wrapper(wrapper, function)
    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {**function.__annotations__, VERSION_INPUT: orm.Int}
    return calcfunction(wrapper)
