"""Memory limits: the file-based commands estimate what a job will allocate before allocating it and refuse
with the estimate when it is above the limit (no AiiDA import).

The limit is 80% of the machine's physical memory (or of the cgroup's memory limit, when a container or
a batch job sets a lower one); the environment variable ``IRSPEC_MEMORY_LIMIT`` sets another one, in bytes
or with a suffix (``500M``, ``4G``, ``1.5T``; powers of 1024).
"""

import os
import re

from aiida_irspec.exceptions import InputError, ResourceError

#: Share of the physical memory (or cgroup limit) a single job may plan to use.
MEMORY_FRACTION = 0.8
SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def format_bytes(n_bytes):
    """``n_bytes`` as text in binary units (e.g. ``528 GiB``)."""
    value, unit = float(n_bytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{value:.3g} {unit}"


def _cgroup_limit():
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def memory_limit():
    """The memory (bytes) one job may plan to allocate: ``IRSPEC_MEMORY_LIMIT``, else 80% of the physical
    memory or of a lower cgroup limit."""
    given = os.environ.get("IRSPEC_MEMORY_LIMIT", "").strip()
    if given:
        match = re.fullmatch(r"([0-9.]+(?:[eE][0-9]+)?)\s*([KMGT]?)(?:i?B)?", given, flags=re.IGNORECASE)
        value = float(match.group(1)) * SUFFIXES[match.group(2).upper()] if match else 0.0
        if not value > 0:
            raise InputError(f"IRSPEC_MEMORY_LIMIT={given!r}: expected a positive size, e.g. 4G or 500M")
        return int(value)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cgroup = _cgroup_limit()
    return int(MEMORY_FRACTION * min(physical, cgroup) if cgroup else MEMORY_FRACTION * physical)


def check_memory(n_bytes, what, hint=""):
    """Raise ResourceError (exit code 15) when ``n_bytes`` (an estimate) is above :func:`memory_limit`.

    what: the job, as the message's subject (e.g. "the fit's normal equations"); hint: how to need less.
    """
    limit = memory_limit()
    if n_bytes > limit:
        raise ResourceError(f"{what} would need about {format_bytes(n_bytes)} of memory, more than the limit of "
                            f"{format_bytes(limit)} (80% of this machine's memory, or IRSPEC_MEMORY_LIMIT)"
                            + (f"; {hint}" if hint else ""))
