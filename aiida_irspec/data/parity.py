"""Parity of a stored polarization model: its Born charges against the reference ones it was fitted to and
validated on, read back from the provenance of the PolarizationModelData (the ``fit_polarization_model`` call
that created it: ``structures``/``born_charges`` and ``holdout_structures``/``holdout_born_charges``)."""

import numpy as np

from aiida_irspec.calculations.fit import reference_frames
from aiida_irspec.exceptions import InputError

SETS = {"training": ("structures", "born_charges"), "hold-out": ("holdout_structures", "holdout_born_charges")}


def _namespaces(creator):
    """The inputs of a calcfunction node grouped by namespace: {"structures": {key: node}, ...}."""
    grouped = {}
    for link in creator.base.links.get_incoming().all():
        namespace, _, key = link.link_label.partition("__")
        if key:
            grouped.setdefault(namespace, {})[key] = link.node
    return grouped


def model_parity(model_node):
    """Model and reference Born charges of the structures a PolarizationModelData was fitted to (``training``)
    and held out from (``hold-out``, when the fit had them).

    Returns {set name: (reference Z (F, N, 3, 3), predicted Z (F, N, 3, 3), atomic numbers (N,))}, in |e|.
    Raises InputError if the node was not made by ``fit_polarization_model``.
    """
    creator = model_node.creator
    if creator is None or not (creator.process_type or "").endswith("irspec.fit_polarization_model"):
        raise InputError(f"node <{model_node.pk}> was not created by fit_polarization_model; no references to compare")
    namespaces = _namespaces(creator)
    model = model_node.get_model()
    parity = {}
    for name, (structures, charges) in SETS.items():
        if not namespaces.get(structures):
            continue
        _, frames, reference = reference_frames(namespaces[structures], namespaces.get(charges, {}))
        parity[name] = (np.array(reference), model.predict_born_charges(frames), frames[0].numbers)
    return parity


def plot_parity(parity, path=None, title=None):
    """Scatter of predicted against reference Z components (one panel per set, colour per element), with the
    RMSE of each set. ``parity``: the result of :func:`model_parity`. Saves to ``path`` when given; returns
    the matplotlib Figure."""
    from ase.data import chemical_symbols
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.4 * len(parity), 3.4), layout="constrained")
    axes = figure.subplots(1, len(parity), squeeze=False)[0]
    for ax, (name, (reference, predicted, numbers)) in zip(axes, parity.items()):
        for z in sorted(set(numbers)):
            ax.scatter(reference[:, numbers == z].ravel(), predicted[:, numbers == z].ravel(), s=4, alpha=0.5,
                       label=chemical_symbols[z], rasterized=True)
        limits = [min(reference.min(), predicted.min()) - 0.1, max(reference.max(), predicted.max()) + 0.1]
        ax.plot(limits, limits, color="k", lw=0.6)
        rmse = float(np.sqrt(np.mean((predicted - reference) ** 2)))
        ax.set(xlim=limits, ylim=limits, xlabel="reference Z (|e|)", ylabel="model Z (|e|)",
               title=f"{name}: {len(reference)} structures, RMSE {rmse:.2g} |e|")
        ax.title.set_fontsize(9)
        ax.legend(markerscale=3, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    if path is not None:
        from aiida_irspec.files import savefig

        savefig(figure, path, dpi=110)  # atomically
    return figure
