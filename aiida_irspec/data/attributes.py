"""Conversion of values for AiiDA node attributes (which hold JSON)."""

import math

import numpy as np


def json_safe(value):
    """A copy of ``value`` that AiiDA attributes accept: numpy scalars and arrays to Python numbers and
    lists, tuples to lists, NaN and infinities to None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
