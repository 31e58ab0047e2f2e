"""BornChargesData: validation, attributes, sum rule, storage and the ASE round trip, on real ZrO2 charges."""

import ase.io
import numpy as np
import pytest

from aiida_irspec.exceptions import InputError
from aiida_irspec.io.vasp import read_born_charges

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("aiida_profile")]


@pytest.fixture(scope="module")
def zro2_record(zro2_dir):
    return read_born_charges(zro2_dir / "OUTCAR.51.gz")


def make(record, **kwargs):
    from aiida_irspec.data.born_charges import BornChargesData

    arguments = {"symbols": record.atoms.get_chemical_symbols(), "dielectric": record.dielectric,
                 "source": {"engine": "vasp", **record.source}}
    arguments.update(kwargs)
    return BornChargesData(arguments.pop("born_charges", record.born_charges), **arguments)


def test_attributes_and_sum_rule(zro2_record):
    node = make(zro2_record).store()
    from aiida import orm

    loaded = orm.load_node(node.pk)
    np.testing.assert_array_equal(loaded.born_charges, zro2_record.born_charges)
    np.testing.assert_array_equal(loaded.dielectric, zro2_record.dielectric)
    assert loaded.symbols == zro2_record.atoms.get_chemical_symbols()
    attributes = loaded.base.attributes
    assert attributes.get("units") == "|e|"
    assert attributes.get("convention").startswith("Z[i, a, b] = dP_a / dx_{i,b}")
    assert attributes.get("formula") == "O64Zr32" and attributes.get("n_atoms") == 96
    assert loaded.source["sha256"] == zro2_record.source["sha256"] and loaded.source["engine"] == "vasp"
    violation = loaded.sum_rule_violation()
    assert violation.shape == (3, 3)
    np.testing.assert_allclose(violation, zro2_record.born_charges.sum(axis=0))
    assert loaded.sum_rule_max == pytest.approx(np.abs(violation).max())
    assert 0 < loaded.sum_rule_max < 1e-3


def test_without_dielectric(zro2_record):
    node = make(zro2_record, dielectric=None).store()
    assert node.dielectric is None


@pytest.mark.parametrize("change, message", [
    ({"born_charges": np.zeros((96, 3))}, "shape"),
    ({"born_charges": np.zeros((96, 3, 2))}, "shape"),
    ({"born_charges": np.full((96, 3, 3), np.nan)}, "NaN"),
    ({"born_charges": [["a"]]}, "numeric"),
    ({"symbols": ["Zr"] * 95}, "96 atoms but 95 symbols"),
    ({"dielectric": np.eye(2)}, "dielectric must have shape (3, 3)"),
    ({"dielectric": np.diag([1.0, np.inf, 1.0])}, "dielectric contains NaN"),
])
def test_validation(zro2_record, change, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(zro2_record, **change)


def test_ase_round_trip(zro2_record, tmp_path):
    from aiida import orm

    from aiida_irspec.data.born_charges import BornChargesData

    node = make(zro2_record)
    structure = orm.StructureData(ase=zro2_record.atoms)
    atoms = node.to_ase(structure)
    assert atoms.arrays["born_charges"].shape == (96, 9)
    np.testing.assert_array_equal(atoms.arrays["born_charges"][7].reshape(3, 3), zro2_record.born_charges[7])
    path = tmp_path / "zro2.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    back = BornChargesData.from_ase(ase.io.read(path), source={"path": str(path)})
    np.testing.assert_allclose(back.born_charges, node.born_charges, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.dielectric, node.dielectric, rtol=0, atol=1e-12)
    assert back.symbols == node.symbols and back.source == {"path": str(path)}

    shuffled = zro2_record.atoms[::-1]
    with pytest.raises(InputError, match="does not match"):
        node.to_ase(orm.StructureData(ase=shuffled))
    with pytest.raises(InputError, match="no 'born_charges'"):
        BornChargesData.from_ase(zro2_record.atoms)
