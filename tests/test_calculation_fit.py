"""fit_polarization_model and PolarizationModelData on real tblite Born charges of water-dimer frames."""

import numpy as np
import pytest

from campaign_helpers import SMALL_DESCRIPTOR, dimer_references, reference_nodes


@pytest.fixture
def fitted(aiida_profile):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.fit import fit_polarization_model

    frames, charges = dimer_references()
    structures, born = reference_nodes(frames[:8], charges[:8])
    holdout_structures, holdout_born = reference_nodes(frames[8:], charges[8:], keys=[f"h{k}" for k in range(4)])
    settings = orm.Dict({"descriptor": SMALL_DESCRIPTOR, "baseline": "zero", "regularization": "evidence"})
    model, node = run_get_node(fit_polarization_model, settings=settings, structures=structures, born_charges=born,
                               holdout_structures=holdout_structures, holdout_born_charges=holdout_born)
    assert node.is_finished_ok
    return model, node


def test_fit_output_attributes_and_errors(fitted):
    from aiida_irspec.data.polarization_model import PolarizationModelData

    model, node = fitted
    assert isinstance(model, PolarizationModelData) and model.is_stored
    assert model.training_set_size == 8
    assert model.hyperparameters["descriptor"]["cutoff"] == 4.0 and model.hyperparameters["baseline"] == "zero"
    assert model.base.attributes.get("species") == [1, 8]
    frames, charges = dimer_references()
    # the validation error is that of the stored model on the held-out frames, recomputed here
    loaded = model.get_model()
    predicted = loaded.predict_born_charges(frames[8:])
    rmse = float(np.sqrt(np.mean((predicted - np.array(charges[8:])) ** 2)))
    assert np.isclose(model.born_charges_rmse, rmse, rtol=1e-8)
    assert model.metrics["validation"]["born_charges_rmse"]["all"] == model.born_charges_rmse
    # the learned model beats predicting zero for every Born charge (baseline "zero")
    assert rmse < 0.5 * float(np.sqrt(np.mean(np.array(charges[8:]) ** 2)))
    # provenance: 8 + 8 + 4 + 4 reference inputs and the settings
    labels = {link.link_label for link in node.base.links.get_incoming().all()}
    assert len([label for label in labels if label.startswith("born_charges__")]) == 8
    assert "holdout_structures__h0" in labels and "settings" in labels


def test_stored_model_predicts_like_the_fitted_one(fitted, tmp_path):
    model, _ = fitted
    frames, _ = dimer_references()
    first, second = model.get_model(), model.get_model()
    assert np.array_equal(first.predict_polarization(frames), second.predict_polarization(frames))
    assert model.filename.endswith(".npz")


def test_mismatched_keys_are_an_input_error(aiida_profile):
    from aiida import orm
    from aiida.engine import run

    from aiida_irspec.calculations.fit import fit_polarization_model
    from aiida_irspec.exceptions import InputError

    frames, charges = dimer_references()
    structures, born = reference_nodes(frames[:3], charges[:3])
    born["extra"] = born.pop("frame_2")
    with pytest.raises(InputError, match="same keys"):
        run(fit_polarization_model, settings=orm.Dict({"descriptor": SMALL_DESCRIPTOR}), structures=structures,
            born_charges=born)


def test_unfitted_model_is_refused():
    from aiida_irspec.data.polarization_model import PolarizationModelData
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.model import PolarizationModel

    with pytest.raises(InputError, match="fitted PolarizationModel"):
        PolarizationModelData(PolarizationModel())
