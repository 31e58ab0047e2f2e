"""The campaign's settings groups besides the model's and the spectrum's (no AiiDA import): how reference
configurations are chosen (:class:`SelectionSettings`), the independent NVE runs of a spectrum
(:class:`RunSettings`), failure tolerance (:class:`FailureSettings`) and the numbers of one MD run
(:class:`MdSettings`).

Each holds its defaults and limits once; the WorkChains' port validators, the campaign YAML and the docs read them
from here. Limits are generous for real work and refuse what no machine can run.
"""

import dataclasses

from aiida_irspec.campaign.selection import STRATEGIES
from aiida_irspec.settings import REQUIRED, Settings, setting

ERROR_ESTIMATES = ("holdout", "uncertainty", "both")
#: Most reference calculations, NVE runs and MD steps of one campaign stage.
MAX_REFERENCES = 100000
MAX_RUNS = 10000
MAX_STEPS = 10**9
MAX_CONCURRENT = 10000


@dataclasses.dataclass(frozen=True)
class SelectionSettings(Settings):
    """Active learning: the seed set, the batches, the stopping rule."""

    strategy: str = setting("uncertainty", "How each batch is chosen from the pool (random is for comparison).",
                            choices=STRATEGIES)
    initial: int = setting(8, "Size of the seed set (farthest-point sampling).", minimum=1, maximum=MAX_REFERENCES)
    batch: int = setting(4, "Configurations added per iteration.", minimum=1, maximum=MAX_REFERENCES)
    budget: int = setting(40, "Most reference calculations, held-out ones included.", minimum=1,
                          maximum=MAX_REFERENCES)
    target_error: float = setting(0.05, "Stop when the estimated Born-charge RMSE falls below this.", minimum=0,
                                  exclusive_minimum=True, maximum=100, unit="|e|")
    error_estimate: str = setting("holdout", "Error from held-out references, from the model's uncertainty on "
                                             "the pool, or both (the larger counts).", choices=ERROR_ESTIMATES)
    holdout: int = setting(8, "Held-out reference structures (error_estimate holdout or both).", minimum=0,
                           maximum=MAX_REFERENCES)
    seed: int = setting(0, "Seed of the random choices.", minimum=0)

    @classmethod
    def consistency_problems(cls, values, prefix):
        problems = []
        uses_holdout = values["error_estimate"] in ("holdout", "both")
        if uses_holdout and values["holdout"] < 1:
            problems.append(f"{prefix}holdout: must be >= 1 when error_estimate is {values['error_estimate']!r}")
        holdout = values["holdout"] if uses_holdout else 0
        if values["initial"] + holdout > values["budget"]:
            problems.append(f"{prefix}budget: {values['budget']} is smaller than initial + holdout "
                            f"({values['initial']} + {holdout})")
        return problems


@dataclasses.dataclass(frozen=True)
class RunSettings(Settings):
    """The independent NVE runs of a spectrum, started from snapshots of one NVT run."""

    number: int = setting(8, "Independent NVE runs.", minimum=1, maximum=MAX_RUNS)
    steps: int = setting(4000, "MD steps of each NVE run.", minimum=2, maximum=MAX_STEPS)
    timestep: float = setting(0.5, "MD time step of the NVT and NVE runs.", minimum=0, exclusive_minimum=True,
                              maximum=100, unit="fs")
    stride: int = setting(1, "MD steps between stored frames of the NVE runs.", minimum=1, maximum=MAX_STEPS)
    decorrelation: float = setting(200.0, "Time between the NVT snapshots that start the runs.", minimum=0,
                                   exclusive_minimum=True, maximum=1e7, unit="fs")
    thermalization: float = setting(200.0, "NVT time before the first snapshot.", minimum=0, maximum=1e8,
                                    unit="fs")
    seed: int = setting(2, "Seed of the NVT run (the NVE run k gets seed + k).", minimum=0)

    @classmethod
    def consistency_problems(cls, values, prefix):
        if values["steps"] % values["stride"]:
            return [f"{prefix}stride: {values['stride']} does not divide steps ({values['steps']})"]
        if values["steps"] // values["stride"] < 2:
            return [f"{prefix}stride: leaves fewer than 2 stored frames of steps ({values['steps']})"]
        return []


@dataclasses.dataclass(frozen=True)
class FailureSettings(Settings):
    """How many jobs of a stage run at once, and how many may fail."""

    max_concurrent: int = setting(4, "Most jobs of the stage running at once (a sliding window).", minimum=1,
                                  maximum=MAX_CONCURRENT)
    max_failed_fraction: float = setting(0.25, "Stop the stage when more than this fraction of its jobs failed "
                                               "(everything computed is kept).", minimum=0, maximum=1)


@dataclasses.dataclass(frozen=True)
class MdSettings(Settings):
    """The task settings of one molecular-dynamics run (the ports of ``irspec.md`` that are numbers)."""

    steps: int = setting(REQUIRED, "MD steps.", minimum=1, maximum=MAX_STEPS)
    temperature: float = setting(REQUIRED, "Temperature of the thermostat and the initial velocities.", minimum=0,
                                 exclusive_minimum=True, maximum=1e5, unit="K")
    timestep: float | None = setting(None, "Time step; null: the engine protocol's.", minimum=0,
                                     exclusive_minimum=True, maximum=100, unit="fs")
    stride: int = setting(1, "MD steps between stored frames.", minimum=1, maximum=MAX_STEPS)
    seed: int | None = setting(None, "Seed of the initial velocities and the thermostat.", minimum=0)
