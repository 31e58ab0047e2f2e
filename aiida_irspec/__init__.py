"""aiida-irspec: finite-temperature IR spectra from derivative-learned polarization models.

The numerical core (:mod:`aiida_irspec.model`, :mod:`aiida_irspec.spectra`, :mod:`aiida_irspec.io`)
imports without AiiDA; the AiiDA layer (data, calculations, workflows, cli) sits on top.

``NUMERICS_VERSION`` is the version of the results the package's own code computes: the model (fit,
prediction, uncertainty), the spectra, the file readers, the embedded engine (tblite jobs), the
calcfunctions and the parsers of its CalcJobs. AiiDA's cache key of every calcfunction of the plugin holds
it (the input ``numerics_version``, :mod:`aiida_irspec.calculations.versioned`), and it is the
``CACHE_VERSION`` of the CalcJobs and parsers that run that code, so a rerun after it changed recomputes
instead of reusing results of older code (docs/reproducibility.md).

Whoever changes a result beyond round-off (a fix, a new default, another algorithm, another output array
or unit) bumps it by one in the same commit; a change that leaves every result equal to the last bits (a
refactor, a speed-up, documentation) does not. When in doubt, bump: the only cost is recomputing. VASP
jobs are not covered: their results are VASP's, and :class:`aiida_irspec.calculations.vasp_md.VaspMdCalculation`
has a ``CACHE_VERSION`` of its own (bumped when the files it writes change).
"""

__version__ = "0.1.0"

NUMERICS_VERSION = 2  # 2: pdot route auto, bootstrap band by scipy, VASP MD steps read whole, folds of copies
