"""Physical constants and unit conversions: the one place for units in the package.

Internal units everywhere: Angstrom, fs, amu, eV, |e|. Polarization P is the total cell dipole in
|e| Angstrom (not divided by the volume); its time derivative dP/dt is in |e| Angstrom / fs; Born
charges are in |e|; frequencies are reported in cm^-1. Constants are CODATA 2018 (SI), from ASE's table
(``ase.units.CODATA``; scipy.constants holds CODATA 2022 only, whose amu and epsilon_0 differ by 1e-9 and would
change the MD time unit, hence every trajectory).
"""

import math

from ase.units import CODATA

_CODATA_2018 = CODATA["2018"]

# SI constants
ELEMENTARY_CHARGE = _CODATA_2018["_e"]  # C
SPEED_OF_LIGHT = _CODATA_2018["_c"]  # m / s
VACUUM_PERMITTIVITY = 1.0 / (_CODATA_2018["_mu0"] * SPEED_OF_LIGHT**2)  # F / m
BOLTZMANN = _CODATA_2018["_k"]  # J / K
HBAR = _CODATA_2018["_hplanck"] / (2 * math.pi)  # J s
ATOMIC_MASS_UNIT = _CODATA_2018["_amu"]  # kg
AVOGADRO = _CODATA_2018["_Nav"]  # 1 / mol

ANGSTROM = 1e-10  # m
FEMTOSECOND = 1e-15  # s

# Atomic units for engines that work in them (tblite): CODATA 2018's listed values, which tblite itself uses;
# ASE derives its Bohr and Hartree from other constants (1e-11 apart), which would move every tblite trajectory.
BOHR_ANGSTROM = 0.529177210903  # Angstrom
HARTREE_EV = 27.211386245988  # eV

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


# --- IR spectra (aiida_irspec.spectra): prefactors of the Green-Kubo formula (docs/theory.md; eq. 5 of
# Schmiedmayer & Kresse, J. Chem. Phys. 161, 084703 (2024)) ---
#
#   alpha(omega) n(omega) = beta / (6 V c eps0) * Int_{-inf}^{inf} <Pdot(0).Pdot(t)> exp(-i omega t) dt
#
# with the correlation C(t) in (|e| Angstrom / fs)^2, t in fs, V in Angstrom^3 and T in K:
#   alpha n [cm^-1] = GREEN_KUBO_ABSORPTION_CM1 / (V T) * Int C(t) exp(-i omega t) dt
# For molecules and clusters (N molecules in the run) the same formula per molecule, with the volume
# replaced by the molar concentration N_A N / V, gives the molar (Napierian) absorption coefficient
# N_A sigma(omega) = N_A alpha n V / N, whose integral over wavenumber is the integrated intensity in km/mol:
#   N_A sigma [(km/mol) / cm^-1] = GREEN_KUBO_MOLAR_KM_MOL_PER_CM1 / (N T) * Int C(t) exp(-i omega t) dt
KM_PER_MOL_PER_CM1_IN_M2_PER_MOL = 10.0  # 1 (km/mol)/(cm^-1) = 1e3 m/mol / 1e2 m^-1 = 10 m^2/mol
GREEN_KUBO_ABSORPTION_CM1 = (
    E_ANGSTROM_PER_FS_IN_C_M_PER_S**2 * FEMTOSECOND
    / (6 * ANGSTROM**3 * SPEED_OF_LIGHT * VACUUM_PERMITTIVITY * BOLTZMANN)
    / 100.0
)  # cm^-1 Angstrom^3 K / ((|e| Angstrom/fs)^2 fs)
GREEN_KUBO_MOLAR_KM_MOL_PER_CM1 = (
    AVOGADRO * E_ANGSTROM_PER_FS_IN_C_M_PER_S**2 * FEMTOSECOND
    / (6 * SPEED_OF_LIGHT * VACUUM_PERMITTIVITY * BOLTZMANN)
    / KM_PER_MOL_PER_CM1_IN_M2_PER_MOL
)  # (km/mol)/(cm^-1) K / ((|e| Angstrom/fs)^2 fs)

# Harmonic IR intensity of a normal mode (integrated molar absorption, km/mol):
#   A = N_A / (12 eps0 c^2) |d mu / d Q|^2,  Q the mass-weighted normal coordinate.
# With d mu / d Q in |e| / sqrt(amu): A [km/mol] = HARMONIC_INTENSITY_KM_MOL * |d mu / d Q|^2.
HARMONIC_INTENSITY_KM_MOL = (
    AVOGADRO * ELEMENTARY_CHARGE**2 / ATOMIC_MASS_UNIT / (12 * VACUUM_PERMITTIVITY * SPEED_OF_LIGHT**2) / 1000.0
)  # km/mol per |e|^2/amu
