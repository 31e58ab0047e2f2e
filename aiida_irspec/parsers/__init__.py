"""Parsers of the CalcJobs of aiida-irspec."""
