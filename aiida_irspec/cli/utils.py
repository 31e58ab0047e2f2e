"""Helpers shared by the sub-commands: clean errors, profile loading, tables."""

import functools
import sys

import click

from aiida_irspec.exceptions import IrspecError


def echo_error_and_exit(message, exit_code=2):
    """Print ``Error: message`` to stderr and leave with ``exit_code``."""
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(exit_code)


def user_errors(function):
    """Turn the package's input errors (and a missing file) into one message and an exit code, no traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except IrspecError as error:
            echo_error_and_exit(str(error), error.exit_code)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
            echo_error_and_exit(f"{error.strerror}: {error.filename}", 2)

    return wrapper


def load_profile_or_exit(profile=None):
    """Load the named (or default) AiiDA profile; exit with a hint when there is none."""
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError

    try:
        return load_profile(profile, allow_switch=True)
    except (ConfigurationError, ProfileConfigurationError) as error:
        echo_error_and_exit(f"no usable AiiDA profile ({error}). Create one with `verdi presto`.", 3)


def format_table(rows, headers):
    """A plain-text table (list of row tuples) with left-aligned columns."""
    columns = [headers, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(str(row[k])) for row in columns) for k in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in columns]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
