"""Calculation functions and CalcJobs of aiida-irspec."""
