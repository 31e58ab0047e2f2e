"""BornChargesData: Born effective charges of one structure (and its dielectric tensor) as an AiiDA node."""

import numpy as np
from aiida import orm

from aiida_irspec.exceptions import InputError

CONVENTION = "Z[i, a, b] = dP_a / dx_{i,b} (a: field/polarization direction, b: displacement direction of atom i)"
UNITS = "|e|"


def _finite_array(value, shape, name):
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be numeric: {error}") from None
    if (shape[0] is None and (array.ndim != 3 or array.shape[1:] != shape[1:])) or (
            shape[0] is not None and array.shape != shape):
        expected = "(N, 3, 3)" if shape[0] is None else str(shape)
        raise InputError(f"{name} must have shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values")
    return array


class BornChargesData(orm.ArrayData):
    """Born effective charges ``Z`` (N, 3, 3) in |e| of one structure, ``Z[i, a, b] = dP_a / dx_{i,b}``,
    with the electronic dielectric tensor epsilon_infinity (3, 3) when the run gave one.

    Arrays: ``born_charges`` (N, 3, 3), ``dielectric`` (3, 3, optional). Attributes: ``units`` ("|e|"),
    ``convention``, ``symbols`` (N chemical symbols, order of the atoms), ``source`` (engine, version,
    path, sha256, ...) and, for fast queries, ``n_atoms``, ``formula`` and ``sum_rule_max``.
    """

    def __init__(self, born_charges, *, symbols, dielectric=None, source=None, **kwargs):
        """born_charges: (N, 3, 3) |e|; symbols: N chemical symbols; dielectric: (3, 3) or None;
        source: dict describing where the numbers come from (engine, version, path, sha256)."""
        super().__init__(**kwargs)
        born = _finite_array(born_charges, (None, 3, 3), "born_charges")
        symbols = [str(symbol) for symbol in symbols]
        if len(symbols) != len(born) or not symbols:
            raise InputError(f"born_charges has {len(born)} atoms but {len(symbols)} symbols were given")
        self.set_array("born_charges", born)
        if dielectric is not None:
            self.set_array("dielectric", _finite_array(dielectric, (3, 3), "dielectric"))
        from ase.formula import Formula

        attributes = self.base.attributes
        attributes.set("units", UNITS)
        attributes.set("convention", CONVENTION)
        attributes.set("symbols", symbols)
        attributes.set("source", dict(source or {}))
        attributes.set("n_atoms", len(symbols))
        attributes.set("formula", Formula.from_list(symbols).format("hill"))
        attributes.set("sum_rule_max", float(np.abs(born.sum(axis=0)).max()))

    @property
    def born_charges(self):
        """(N, 3, 3) Born effective charges in |e|."""
        return self.get_array("born_charges")

    @property
    def dielectric(self):
        """(3, 3) electronic dielectric tensor, or None."""
        return self.get_array("dielectric") if "dielectric" in self.get_arraynames() else None

    @property
    def symbols(self):
        """Chemical symbols of the N atoms."""
        return list(self.base.attributes.get("symbols"))

    @property
    def source(self):
        """Where the numbers come from: dict with engine, version, path, sha256 (when known)."""
        return dict(self.base.attributes.get("source", {}))

    def sum_rule_violation(self):
        """(3, 3) sum over atoms of Z in |e|: zero for a neutral cell (acoustic sum rule), up to DFT noise."""
        return self.born_charges.sum(axis=0)

    @property
    def sum_rule_max(self):
        """max |sum_i Z[i, a, b]| over a, b, in |e|."""
        return self.base.attributes.get("sum_rule_max")

    def to_ase(self, structure):
        """The structure (StructureData) as ase.Atoms with ``arrays["born_charges"]`` (N, 9) (row-major Z[i])
        and, when present, ``info["dielectric"]`` (9,)."""
        atoms = structure.get_ase()
        if atoms.get_chemical_symbols() != self.symbols:
            raise InputError(f"structure {atoms.get_chemical_formula()} does not match the Born charges' atoms "
                             f"({self.base.attributes.get('formula')}, same order required)")
        atoms.arrays["born_charges"] = self.born_charges.reshape(len(atoms), 9)
        if self.dielectric is not None:
            atoms.info["dielectric"] = self.dielectric.reshape(9)
        return atoms

    @classmethod
    def from_ase(cls, atoms, source=None):
        """From ase.Atoms with ``arrays["born_charges"]`` ((N, 9) or (N, 3, 3)) and optional
        ``info["dielectric"]`` ((9,) or (3, 3)): the inverse of :meth:`to_ase`."""
        if "born_charges" not in atoms.arrays:
            raise InputError("the atoms carry no 'born_charges' array")
        dielectric = atoms.info.get("dielectric")
        try:
            born = np.asarray(atoms.arrays["born_charges"], dtype=float).reshape(len(atoms), 3, 3)
            if dielectric is not None:
                dielectric = np.asarray(dielectric, dtype=float).reshape(3, 3)
        except ValueError as error:
            raise InputError("born_charges must be (N, 9) or (N, 3, 3) and dielectric (9,) or (3, 3): "
                             f"{error}") from None
        return cls(born, symbols=atoms.get_chemical_symbols(), dielectric=dielectric, source=source)
