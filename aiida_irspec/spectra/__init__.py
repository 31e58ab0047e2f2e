"""IR spectra from polarization currents: Green-Kubo, windows, quantum corrections, averaging (no AiiDA import)."""
