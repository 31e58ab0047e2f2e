"""aiida-irspec: finite-temperature IR spectra from derivative-learned polarization models.

The numerical core (:mod:`aiida_irspec.model`, :mod:`aiida_irspec.spectra`, :mod:`aiida_irspec.io`)
imports without AiiDA; the AiiDA layer (data, calculations, workflows, cli) sits on top.
"""

__version__ = "0.1.0"
