"""Helpers shared by the sub-commands: clean errors, signals, checked parameter types, profile loading, tables.

Exit codes common to every command: 2 bad input; 14 an output cannot be written (folder missing,
read-only or full, a directory, one of the inputs); 15 the job would need more memory than the limit
(:mod:`aiida_irspec.resources`); 130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM.
"""

import functools
import math
import signal
import sys
import threading

import click

from aiida_irspec.exceptions import InputError, IrspecError, Terminated

#: Exit codes of a command stopped by a signal (128 + the signal number, as a shell reports it).
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _raise_terminated(signum, frame):
    raise Terminated()


def echo_error_and_exit(message, exit_code=2):
    """Print ``Error: message`` to stderr and leave with ``exit_code``."""
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(exit_code)


def user_errors(function):
    """Turn the package's input errors (and a missing file) into one message and an exit code, no traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        previous = None
        if threading.current_thread() is threading.main_thread():  # SIGTERM unwinds like Ctrl-C
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return function(*args, **kwargs)
        except IrspecError as error:
            echo_error_and_exit(str(error), error.exit_code)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
            echo_error_and_exit(f"{error.strerror}: {error.filename}", 2)
        except KeyboardInterrupt as error:
            number = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
            echo_error_and_exit(f"stopped by {number.name}; files written before are unchanged",
                                SIGNAL_EXIT_CODES[number])
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class InputFile(click.Path):
    """An input file argument or option: it must exist and be a regular file. A directory, a FIFO (reading
    would wait forever), a device or a socket is a usage error (exit 2) before anything opens it."""

    name = "file"

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        from aiida_irspec.files import check_input_file

        value = super().convert(value, param, ctx)
        try:
            check_input_file(value, "file")
        except InputError as error:
            self.fail(str(error), param, ctx)
        return value


class Number(click.FloatRange):
    """A float option that must be finite (NaN and infinity refused) and inside [min, max]
    (``min_open``/``max_open`` exclude the ends): a usage error (exit 2) at option parsing."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def progress_option(function):
    """``--progress/--no-progress``: progress bars on stderr (frames done of all, rate, time left); by default when
    stderr is a terminal, not in a log or a job."""
    option = click.option("--progress/--no-progress", default=None,
                          callback=lambda ctx, param, value: sys.stderr.isatty() if value is None else value,
                          help="Progress bars on stderr: frames done, rate, time left (default: on a terminal).")
    return option(function)


def global_option(name):
    """The value of the global option ``name`` ("profile_name", "verbosity") of ``aiida-irspec``, or None."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj.get(name) if obj else None


def load_profile_or_exit(profile=None):
    """Load the named profile, else the one of the global ``-p/--profile``, else the default one (a profile
    already loaded under that name is kept); exit 3 with a hint when there is none or it does not load."""
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError
    from aiida.manage import get_manager

    profile = profile or global_option("profile_name")
    loaded = get_manager().get_profile()
    if loaded is not None and profile in (None, loaded.name):
        return loaded
    try:
        return load_profile(profile, allow_switch=True)
    except (ConfigurationError, ProfileConfigurationError) as error:
        echo_error_and_exit(f"no usable AiiDA profile ({error}). Create one with `verdi presto`.", 3)


def format_table(rows, headers=None):
    """A plain-text table as verdi prints them (tabulate's "simple" format): ``rows`` a list of row tuples,
    ``headers`` the column titles (None: no title line). Cells are printed as given (no number reformatting)."""
    from tabulate import tabulate

    return tabulate(rows, headers=headers or (), tablefmt="simple", disable_numparse=True)
