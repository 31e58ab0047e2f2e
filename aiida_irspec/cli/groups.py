"""The click group of the sub-commands that use AiiDA (``campaign``, ``cluster``): aiida-core's
``VerdiCommandGroup`` (verdi's context object, suggestions for a mistyped command), without the ``-v`` it adds to
every command: ``aiida-irspec -v LEVEL`` is global."""

from aiida.cmdline.groups import VerdiCommandGroup


class AiidaGroup(VerdiCommandGroup):
    """``VerdiCommandGroup`` with the verbosity option left to the ``aiida-irspec`` group."""

    @staticmethod
    def add_verbosity_option(cmd):
        return cmd
