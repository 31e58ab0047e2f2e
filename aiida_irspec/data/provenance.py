"""Provenance recipes (QueryBuilder): from a spectrum back to its Born-charge jobs, and forward from one job.

A Born-charge job is an ``irspec.born_charges`` WorkChain (whatever the engine); its ``born_charges``
output (BornChargesData) is the link between the two directions. The chain the queries follow, through
data provenance (create and input links), is::

    BornChargesData -> fit_polarization_model -> PolarizationModelData -> irspec.predict_pdot -> dP/dt
        -> aggregate_spectra -> IRSpectrumData

so they work on the nodes of a campaign, of the WorkChains used on their own, or of hand-made calls.
"""

from aiida import orm

from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.data.ir_spectrum import IRSpectrumData
from aiida_irspec.data.polarization_model import PolarizationModelData

BORN_CHARGES_WORKCHAIN = "aiida.workflows:irspec.born_charges"


def born_charge_jobs_of(node):
    """Every ``irspec.born_charges`` WorkChain whose Born charges went into ``node`` (e.g. an IRSpectrumData
    or a PolarizationModelData), as a list of WorkflowNodes ordered by PK.

    Recipe: the BornChargesData among the node's provenance ancestors, then the WorkChain that returned each.
    """
    query = orm.QueryBuilder()
    query.append(orm.Node, filters={"id": node.pk}, tag="target")
    query.append(BornChargesData, with_descendants="target", tag="born_charges")
    query.append(orm.WorkflowNode, with_outgoing="born_charges",
                 filters={"process_type": BORN_CHARGES_WORKCHAIN}, project="*", tag="job")
    query.distinct().order_by({"job": "id"})
    return query.all(flat=True)


def products_of(job, cls):
    """Every node of type ``cls`` made (directly or further down) from the Born charges of ``job`` (an
    ``irspec.born_charges`` WorkChain or the CalcJob that computed them), ordered by PK.

    Recipe: the job's BornChargesData outputs, then their provenance descendants of type ``cls``.
    """
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, filters={"id": job.pk}, tag="job")
    query.append(BornChargesData, with_incoming="job", tag="born_charges")
    query.append(cls, with_ancestors="born_charges", project="*", tag="product")
    query.distinct().order_by({"product": "id"})
    return query.all(flat=True)


def models_using(job):
    """Every PolarizationModelData fitted (also held out) with the Born charges of ``job``."""
    return products_of(job, PolarizationModelData)


def spectra_using(job):
    """Every IRSpectrumData made with a model that used the Born charges of ``job``."""
    return products_of(job, IRSpectrumData)
