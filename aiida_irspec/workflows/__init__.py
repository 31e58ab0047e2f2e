"""WorkChains of aiida-irspec."""
