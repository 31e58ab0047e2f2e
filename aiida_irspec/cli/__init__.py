"""The ``aiida-irspec`` command. Sub-commands live in their own modules and load lazily, so that
``aiida-irspec --help`` stays fast and a file-based command never imports AiiDA."""

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


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when they are called or listed."""

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module, attribute = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(f"aiida_irspec.cli.{module}"), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aiida-irspec")
def cli():
    """Finite-temperature IR spectra from first principles: polarization models learned from Born
    effective charges, Green-Kubo spectra with confidence bands, and AiiDA campaigns that run it all."""
