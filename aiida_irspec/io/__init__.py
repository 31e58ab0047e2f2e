"""Readers of VASP outputs and ASE interop (no AiiDA import)."""
