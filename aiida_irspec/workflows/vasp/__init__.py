"""VASP WorkChains of aiida-irspec: Born charges by linear response and machine-learned force-field MD.

Both are BaseRestartWorkChains around aiida-vasp's VASP CalcJob (:mod:`.base` holds what they share).
"""
