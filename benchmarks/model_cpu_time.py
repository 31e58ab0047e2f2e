"""CPU time (not wall time) of the ZrO2 fit and predictions on one thread: a load-independent measure of
what the same run takes on a quiet core (the dev machine is shared; wall times vary with its load).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/model_cpu_time.py
"""

import pathlib
import resource
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from zro2 import SHARED, load  # noqa: E402

from aiida_irspec.model import PolarizationModel  # noqa: E402


def cpu(function, *args, **kwargs):
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    result = function(*args, **kwargs)
    return time.process_time() - start_cpu, time.perf_counter() - start_wall, result


def main():
    frames, charges = load(SHARED)
    seconds, wall, model = cpu(PolarizationModel().fit, frames, charges)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fit on 60 ZrO2: CPU {seconds:.1f} s (wall {wall:.1f} s), peak RSS so far {peak:.0f} MB")
    test = frames[:20]
    velocities = np.random.default_rng(0).normal(scale=0.01, size=(len(test), len(test[0]), 3))
    model.predict_polarization(test[:2])
    for name, function, args in (("P", model.predict_polarization, (test,)),
                                 ("dP/dt", model.predict_pdot, (test, velocities)),
                                 ("Z", model.predict_born_charges, (test,))):
        seconds, wall, _ = cpu(function, *args)
        print(f"{name}: CPU {1e3 * seconds / len(test):.1f} ms per 96-atom frame "
              f"(wall {1e3 * wall / len(test):.1f} ms)")


if __name__ == "__main__":
    main()
