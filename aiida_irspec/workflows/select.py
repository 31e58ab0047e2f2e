"""``irspec.select``: choose k configurations from a TrajectoryData pool."""

from aiida import orm
from aiida.engine import WorkChain

from aiida_irspec.campaign.selection import STRATEGIES
from aiida_irspec.data.polarization_model import PolarizationModelData


def _validate(inputs, _):
    """Inputs that cannot work together; returns the message or None."""
    strategy = inputs["strategy"].value
    if strategy not in STRATEGIES:
        return f"strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}"
    if strategy == "uncertainty" and "model" not in inputs:
        return "strategy 'uncertainty' needs a model"
    if inputs["number"].value < 1:
        return f"number must be >= 1, got {inputs['number'].value}"
    return None


class SelectWorkChain(WorkChain):
    """Choose ``number`` frames of the trajectory ``pool`` by farthest-point sampling in descriptor space,
    by model uncertainty (kept diverse within the batch), or at random (for comparison).

    Frames in ``exclude`` (e.g. the current training set) are never chosen and count as already covered;
    only frames in ``candidates`` (default: all) may be chosen. Outputs the chosen frame indices and one
    StructureData per chosen frame.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("pool", valid_type=orm.TrajectoryData, help="Trajectory whose frames are the candidates.")
        spec.input("number", valid_type=orm.Int, help="How many frames to choose.")
        spec.input("strategy", valid_type=orm.Str, default=lambda: orm.Str("farthest_point"),
                   help=f"One of {', '.join(STRATEGIES)}.")
        spec.input("seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the random strategy.")
        spec.input("descriptor", valid_type=orm.Dict, required=False,
                   help="DescriptorSettings of the distance space (default: the model's, else the defaults).")
        spec.input("candidates", valid_type=orm.List, required=False, help="Frame indices that may be chosen.")
        spec.input("exclude", valid_type=orm.List, required=False, help="Frame indices chosen before.")
        spec.input("model", valid_type=PolarizationModelData, required=False,
                   help="Fitted model: needed for the uncertainty strategy.")
        spec.inputs.validator = _validate
        spec.outline(cls.check_pool, cls.select)
        spec.output("indices", valid_type=orm.List, help="Chosen frame indices, in the order chosen.")
        spec.output_namespace("structures", valid_type=orm.StructureData, dynamic=True,
                              help="The chosen frames, as frame_<index>.")
        spec.exit_code(300, "ERROR_POOL_TOO_SMALL", message="The pool has {available} frames to choose from, "
                                                            "fewer than the {number} asked for.")

    def check_pool(self):
        """Enough candidates left after the exclusions?"""
        n_frames = self.inputs.pool.numsteps
        candidates = set(self.inputs.candidates.get_list()) if "candidates" in self.inputs else set(range(n_frames))
        exclude = set(self.inputs.exclude.get_list()) if "exclude" in self.inputs else set()
        available = len(candidates - exclude)
        if available < self.inputs.number.value:
            return self.exit_codes.ERROR_POOL_TOO_SMALL.format(available=available, number=self.inputs.number.value)
        return None

    def select(self):
        """Run the selection (a calcfunction, so the choice is in the provenance) and expose its results."""
        from aiida_irspec.calculations.select import select_configurations

        settings = {"number": self.inputs.number.value, "strategy": self.inputs.strategy.value,
                    "seed": self.inputs.seed.value}
        if "descriptor" in self.inputs:
            settings["descriptor"] = self.inputs.descriptor.get_dict()
        optional = {key: self.inputs[key] for key in ("candidates", "exclude", "model") if key in self.inputs}
        label = f"select {settings['number']} by {settings['strategy']}"
        self.report(f"{label} from {self.inputs.pool.numsteps} frames"
                    + (f" ({len(self.inputs.exclude)} excluded)" if "exclude" in self.inputs else ""))
        results = select_configurations(pool=self.inputs.pool, settings=orm.Dict(settings),
                                        metadata={"label": label, "call_link_label": "select"}, **optional)
        self.out("indices", results["indices"])
        for frame in results["indices"].get_list():
            self.out(f"structures.frame_{frame}", results[f"frame_{frame}"])
        self.report(f"chose frames {results['indices'].get_list()}")
