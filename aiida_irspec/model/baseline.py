"""Fixed baseline charges q_s per species: ``Z[i] = q_s(i) I + learned``, ``P = sum_i q_s(i) x_i + learned``.

The learned part is a periodic, single-valued function of the positions, so it cannot carry the static
charge that moves with an ion around a lattice translation: for periodic cells the baseline must be the
formal (oxidation-state) charges of a neutral cell. For molecules nothing forces the choice (it is chosen
by validation in :class:`~aiida_irspec.model.polarization_model.PolarizationModel`). A baseline must
be neutral for every structure, or P would depend on the origin.
"""

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from aiida_irspec.exceptions import InputError

#: Most common oxidation state of each element (|e|); the default baseline for periodic cells.
FORMAL_CHARGES = {
    "H": 1, "Li": 1, "Na": 1, "K": 1, "Rb": 1, "Cs": 1, "Ag": 1, "Cu": 2, "Tl": 1,
    "Be": 2, "Mg": 2, "Ca": 2, "Sr": 2, "Ba": 2, "Zn": 2, "Cd": 2, "Hg": 2, "Pb": 2, "Sn": 4, "Mn": 2,
    "Fe": 3, "Co": 2, "Ni": 2, "Eu": 3,
    "B": 3, "Al": 3, "Ga": 3, "In": 3, "Sc": 3, "Y": 3, "La": 3, "Bi": 3, "Sb": 3, "Cr": 3, "Gd": 3,
    "Ce": 4, "Ti": 4, "Zr": 4, "Hf": 4, "Si": 4, "Ge": 4, "C": 4,
    "V": 5, "Nb": 5, "Ta": 5, "P": 5, "Mo": 6, "W": 6,
    "N": -3, "O": -2, "S": -2, "Se": -2, "Te": -2, "F": -1, "Cl": -1, "Br": -1, "I": -1,
}


def parse_charges(text):
    """``"Zr=4,O=-2"`` -> {40: 4.0, 8: -2.0}; InputError for anything else."""
    charges = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        symbol, sep, value = item.partition("=")
        try:
            charges[atomic_numbers[symbol.strip()]] = float(value)
        except (KeyError, ValueError):
            raise InputError(f"charges must look like 'Zr=4,O=-2', got {item!r} in {text!r}") from None
        if not sep:
            raise InputError(f"charges must look like 'Zr=4,O=-2', got {item!r} in {text!r}")
    if not charges:
        raise InputError(f"no charges in {text!r}")
    return charges


def normalise_charges(charges):
    """A {symbol or atomic number: charge} mapping as {atomic number: float charge}."""
    out = {}
    for key, value in charges.items():
        number = atomic_numbers.get(key) if isinstance(key, str) else int(key)
        if number is None:
            raise InputError(f"unknown element {key!r} in the baseline charges")
        out[number] = float(value)
        if not np.isfinite(out[number]):
            raise InputError(f"the baseline charge of {key} must be a finite number, not {value!r}")
    return out


def formal_charges(species):
    """Formal charges {Z: q} of the given atomic numbers from :data:`FORMAL_CHARGES`."""
    missing = [chemical_symbols[z] for z in species if chemical_symbols[z] not in FORMAL_CHARGES]
    if missing:
        raise InputError(f"no formal charge known for {missing}: give the baseline charges explicitly "
                         f"(e.g. --charges {','.join(f'{s}=...' for s in missing)})")
    return {int(z): float(FORMAL_CHARGES[chemical_symbols[z]]) for z in species}


def mean_charges(frames, born_charges):
    """Species mean of trace(Z)/3 over the frames that have Z, made exactly neutral.

    The neutral projection removes the composition-weighted net charge (minimum-norm correction), so
    that ``sum_i q_s(i) = 0`` for the summed composition of the frames.
    """
    sums, counts, composition = {}, {}, {}
    for atoms, z in zip(frames, born_charges):
        for number in set(atoms.numbers.tolist()):
            composition[number] = composition.get(number, 0) + int(np.sum(atoms.numbers == number))
        if z is None:
            continue
        trace = np.trace(np.asarray(z), axis1=1, axis2=2) / 3
        for number in set(atoms.numbers.tolist()):
            mask = atoms.numbers == number
            sums[number] = sums.get(number, 0.0) + float(trace[mask].sum())
            counts[number] = counts.get(number, 0) + int(mask.sum())
    missing = sorted(set(composition) - set(counts))
    if missing:
        raise InputError(f"no Born charges for species {[chemical_symbols[z] for z in missing]}: "
                         "the species-mean baseline needs them")
    numbers = sorted(composition)
    q = np.array([sums[z] / counts[z] for z in numbers])
    n = np.array([composition[z] for z in numbers], dtype=float)
    q -= n * (n @ q) / (n @ n)
    return {z: float(v) for z, v in zip(numbers, q)}


def check_neutral(charges, frames, tolerance=1e-6):
    """InputError when a frame has a species without a charge or a net baseline charge."""
    for k, atoms in enumerate(frames):
        missing = sorted(set(atoms.numbers.tolist()) - set(charges))
        if missing:
            raise InputError(f"structure {k}: no baseline charge for {[chemical_symbols[z] for z in missing]}")
        net = sum(charges[z] for z in atoms.numbers)
        if abs(net) > tolerance:
            formula = atoms.get_chemical_formula()
            raise InputError(f"structure {k} ({formula}): the baseline charges "
                             f"{ {chemical_symbols[z]: q for z, q in sorted(charges.items())} } sum to {net:+g} |e|, "
                             "not 0; give charges that make every structure neutral (e.g. --charges Zr=4,O=-2)")


def baseline_charges_per_atom(charges, numbers):
    """(N,) baseline charge of every atom."""
    return np.array([charges[int(z)] for z in numbers], dtype=float)
