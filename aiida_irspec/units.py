"""Physical constants and unit conversions: the one place for units in the package.

Internal units everywhere: Angstrom, fs, amu, eV, |e|. Polarization P is the total cell dipole in
|e| Angstrom (not divided by the volume); its time derivative dP/dt is in |e| Angstrom / fs; Born
charges are in |e|; frequencies are reported in cm^-1. Constants are CODATA 2018 (SI).
"""

import math

# SI constants
ELEMENTARY_CHARGE = 1.602176634e-19  # C
SPEED_OF_LIGHT = 2.99792458e8  # m / s
VACUUM_PERMITTIVITY = 8.8541878128e-12  # F / m
BOLTZMANN = 1.380649e-23  # J / K
HBAR = 1.054571817e-34  # J s
ATOMIC_MASS_UNIT = 1.66053906660e-27  # kg
AVOGADRO = 6.02214076e23  # 1 / mol

ANGSTROM = 1e-10  # m
FEMTOSECOND = 1e-15  # s

BOLTZMANN_EV = BOLTZMANN / ELEMENTARY_CHARGE  # eV / K
HBAR_EV_FS = HBAR / ELEMENTARY_CHARGE / FEMTOSECOND  # eV fs

# The ASE time unit is Angstrom * sqrt(amu / eV); ASE velocities are Angstrom per that unit.
ASE_TIME_UNIT_FS = ANGSTROM * math.sqrt(ATOMIC_MASS_UNIT / ELEMENTARY_CHARGE) / FEMTOSECOND
ASE_VELOCITY_TO_ANGSTROM_PER_FS = 1.0 / ASE_TIME_UNIT_FS

# Kinetic energy: 1 amu (Angstrom / fs)^2 in eV
AMU_A2_PER_FS2_IN_EV = ATOMIC_MASS_UNIT * (ANGSTROM / FEMTOSECOND) ** 2 / ELEMENTARY_CHARGE

# Frequencies: angular frequency in rad / fs  <->  wavenumber in cm^-1
SPEED_OF_LIGHT_CM_PER_FS = SPEED_OF_LIGHT * 100 * FEMTOSECOND
RAD_PER_FS_TO_CM1 = 1.0 / (2 * math.pi * SPEED_OF_LIGHT_CM_PER_FS)
CM1_TO_RAD_PER_FS = 1.0 / RAD_PER_FS_TO_CM1

# Dipole and its rate in SI
E_ANGSTROM_IN_C_M = ELEMENTARY_CHARGE * ANGSTROM  # C m
E_ANGSTROM_PER_FS_IN_C_M_PER_S = ELEMENTARY_CHARGE * ANGSTROM / FEMTOSECOND  # C m / s


def kelvin_to_ev(temperature):
    """Thermal energy k_B T in eV of a temperature in K."""
    return BOLTZMANN_EV * temperature
