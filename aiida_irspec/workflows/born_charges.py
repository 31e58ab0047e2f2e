"""``irspec.born_charges``: Born effective charges of a structure with any engine.

In: ``structure``, ``engine`` (``"tblite"`` for molecules and clusters, ``"vasp"`` for DFPT), ``code``,
``protocol``, ``engine_overrides``, ``options``, ``engine_inputs`` (see :mod:`.engine_base`).
``BornChargesWorkChain.get_builder_from_protocol`` reads ``protocols/born_charges.yaml``.
Out: ``born_charges`` (BornChargesData, with the dielectric tensor where the engine gives it).
"""

from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.workflows.engine_base import EngineWorkChain


class BornChargesWorkChain(EngineWorkChain):
    """Born effective charges Z[i, a, b] = dP_a / dx_{i,b} (|e|) of a structure, whatever the engine."""

    _task = "born_charges"
    _protocol_tag = "born_charges"
    _task_outputs = (("born_charges", True),)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("born_charges", valid_type=BornChargesData,
                    help="Born effective charges in |e| (and epsilon_infinity where the engine gives it).")
