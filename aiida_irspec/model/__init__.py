"""Polarization models learned from Born effective charges (no AiiDA import)."""
