"""Real spherical harmonics and the lambda = 1 coupling of two angular channels.

Conventions (those of featomic): real spherical harmonics ``Y_{l m}``, ``m = -l..l`` in that order,
built from the complex ones with the Condon-Shortley phase; for ``l = 1`` the order is (y, z, x).

Two equivariant densities with angular momenta ``l1`` and ``l2`` couple to a vector (``lambda = 1``)
through ``v_M = sum_{m1 m2} C[m1, m2, M] a_{m1} b_{m2}``.  We use the real Gaunt coefficients
``C[m1, m2, M] = Int Y_{l1 m1} Y_{l2 m2} Y_{1 M} dOmega``: they are the real Clebsch-Gordan coefficients
times a factor that depends only on (l1, l2) (harmless in a linear model), and they vanish unless
``l1 + l2`` is odd, i.e. exactly for the polar couplings (even ``l1 + l2`` would give an axial vector).
"""

import functools

import numpy as np
from scipy.special import roots_legendre, sph_harm_y

#: featomic's m order for l = 1 is (y, z, x); ``XYZ_FROM_M[a]`` is the m index of Cartesian axis a.
XYZ_FROM_M = np.array([2, 0, 1])


def real_spherical_harmonics(l, directions):
    """Real spherical harmonics ``Y_{l m}`` (m = -l..l) of unit vectors ``directions`` (..., 3) -> (..., 2l+1)."""
    directions = np.asarray(directions, dtype=float)
    theta = np.arccos(np.clip(directions[..., 2], -1.0, 1.0))
    phi = np.arctan2(directions[..., 1], directions[..., 0])
    values = np.empty(directions.shape[:-1] + (2 * l + 1,))
    for m in range(-l, l + 1):
        y = sph_harm_y(l, abs(m), theta, phi)
        if m < 0:
            values[..., m + l] = np.sqrt(2.0) * (-1) ** m * y.imag
        elif m == 0:
            values[..., l] = y.real
        else:
            values[..., m + l] = np.sqrt(2.0) * (-1) ** m * y.real
    return values


@functools.lru_cache(maxsize=None)
def vector_coupling(l1, l2):
    """Coefficients ``C[m1, m2, a]`` (2l1+1, 2l2+1, 3) coupling channels l1 and l2 to a polar vector.

    The last axis is Cartesian (x, y, z), already mapped from featomic's (y, z, x).  Only
    ``|l1 - l2| == 1`` gives a non-zero polar vector; anything else is rejected.
    """
    if abs(l1 - l2) != 1:
        raise ValueError(f"l1={l1}, l2={l2}: only |l1 - l2| = 1 couples to a polar vector")
    n_theta, n_phi = l1 + l2 + 4, 2 * (l1 + l2) + 6  # exact quadrature for degree l1 + l2 + 1
    x, w = roots_legendre(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    sin_t = np.sqrt(1 - x**2)
    directions = np.stack(np.broadcast_arrays(sin_t[:, None] * np.cos(phi), sin_t[:, None] * np.sin(phi),
                                              x[:, None]), axis=-1).reshape(-1, 3)
    weights = np.repeat(w * 2 * np.pi / n_phi, n_phi)
    y1, y2, y3 = (real_spherical_harmonics(l, directions) for l in (l1, l2, 1))
    coupling = np.einsum("q,qi,qj,qk->ijk", weights, y1, y2, y3[:, XYZ_FROM_M])
    coupling[np.abs(coupling) < 1e-14] = 0.0
    coupling.setflags(write=False)
    return coupling
