"""The ``aiida-irspec`` command. Sub-commands live in their own modules and load lazily, so that
``aiida-irspec --help`` stays fast and a file-based command (fit, predict, spectrum, pdot, engine) never imports
AiiDA nor needs a profile.

The global options ``-p/--profile`` and ``-v/--verbosity`` are those of ``verdi``: given before the sub-command
(``aiida-irspec -p PROFILE campaign status 5``), they apply to every command that uses AiiDA; the sub-groups of
those commands are aiida-core's ``VerdiCommandGroup`` and their arguments aiida-core's parameter types (a process
or node by PK, UUID or label).
"""

import importlib

import click

from aiida_irspec import __version__

# command name -> "module:attribute" (relative to aiida_irspec.cli)
COMMANDS = {
    "fit": "model:fit",
    "predict": "model:predict",
    "engine": "engine:engine",
    "import-vasp": "import_vasp:import_vasp",
    "spectrum": "spectrum:spectrum",
    "pdot": "trajectory:pdot",
    "campaign": "campaign:campaign",
    "cluster": "cluster:cluster",
    "demo": "demo:demo",
}

#: The sub-commands that work on an AiiDA profile: the global options are handed to aiida-core for them.
AIIDA_COMMANDS = ("campaign", "cluster", "demo", "import-vasp")

#: The levels of ``-v/--verbosity``: aiida-core's log levels (``aiida.common.log.LOG_LEVELS``, checked by a test),
#: named here because importing AiiDA to read them would slow every file-based command down.
VERBOSITY_LEVELS = ("notset", "debug", "info", "report", "warning", "error", "critical")


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when they are called or listed.

    Not aiida-core's ``VerdiCommandGroup`` itself: importing ``aiida.cmdline`` takes about 1 s, which the file-based
    commands must not pay; it borrows that group's suggestions for a mistyped command (importing AiiDA only then).
    """

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def format_commands(self, ctx, formatter):
        """The command list of ``--help``, from the commands' docstrings read from their source files: importing
        the modules would import AiiDA for the campaign commands (about 1 s)."""
        rows = [(name, self._short_help(name, formatter.width - 6 - max(map(len, self.list_commands(ctx)))))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, name, limit):
        import ast
        import importlib.util
        import pathlib

        module, attribute = self.lazy_commands[name].split(":")
        source = pathlib.Path(importlib.util.find_spec(f"aiida_irspec.cli.{module}").origin).read_text()
        function = next(node for node in ast.parse(source).body
                        if isinstance(node, ast.FunctionDef) and node.name == attribute)
        return click.utils.make_default_short_help(ast.get_docstring(function) or "", limit)

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module, attribute = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(f"aiida_irspec.cli.{module}"), attribute)
        command = super().get_command(ctx, name)
        if command is None and not ctx.resilient_parsing:
            from aiida.cmdline.groups import VerdiCommandGroup

            VerdiCommandGroup.fail_with_suggestions(self, ctx, name)
        return command


def _aiida_context(ctx, profile, verbosity):
    """For a command that uses AiiDA: verdi's context object (configuration and profile) and its logging, with
    ``verbosity`` as verdi's ``-v`` sets it, and the profile named by ``-p`` loaded (exit 3 when it does not load)."""
    from aiida.cmdline.groups.verdi import LazyVerdiObjAttributeDict
    from aiida.cmdline.params.options.main import set_log_level
    from aiida.common.log import configure_logging
    from aiida.manage import get_manager

    from aiida_irspec.cli.utils import load_profile_or_exit

    ctx.obj = LazyVerdiObjAttributeDict(ctx, {"profile_name": profile, "verbosity": verbosity})
    set_log_level(ctx, None, verbosity)
    if get_manager().get_profile() is not None:  # loaded before the command (a script, a test): the logging just
        configure_logging(with_orm=True)  # configured would not store the processes' reports; profile loading does
    if profile is not None and ctx.invoked_subcommand != "demo":  # the demo makes its profile when it is missing
        ctx.obj.profile = load_profile_or_exit(profile)


@click.group("aiida-irspec", cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
# -p and -v are plain click options handed to aiida-core in _aiida_context (verdi's context object, its logging,
# load_profile): aiida-core's own PROFILE and VERBOSITY options would import aiida.cmdline for every command.
@click.option("-p", "--profile", metavar="PROFILE",
              help="AiiDA profile of the commands that use one (campaign, cluster, import-vasp, demo); default: the "
                   "default profile. Give it before the sub-command.")
@click.option("-v", "--verbosity", type=click.Choice(VERBOSITY_LEVELS, case_sensitive=False),
              help="Log level of AiiDA and of the package (as `verdi -v`): `info` or `debug` show every job's reports, "
                   "`warning` hides the progress.")
@click.version_option(__version__, prog_name="aiida-irspec")
@click.pass_context
def cli(ctx, profile, verbosity):
    """Finite-temperature IR spectra from first principles: polarization models learned from Born
    effective charges, Green-Kubo spectra with confidence bands, and AiiDA campaigns that run it all."""
    if ctx.invoked_subcommand in AIIDA_COMMANDS:
        _aiida_context(ctx, profile, verbosity)
    else:
        ctx.obj = {"profile_name": profile, "verbosity": verbosity}
        if verbosity is not None:
            import logging

            logging.getLogger("aiida_irspec").setLevel("INFO" if verbosity == "report" else verbosity.upper())
