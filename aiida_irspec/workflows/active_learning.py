"""``irspec.active_learning``: learn a polarization model from as few reference Born-charge jobs as needed.

The loop (ports ``selection``, ``model`` and ``failures``: the settings groups
:class:`~aiida_irspec.campaign.settings.SelectionSettings`, :class:`~aiida_irspec.model.settings.ModelSettings` and
:class:`~aiida_irspec.campaign.settings.FailureSettings`):

1. hold out ``holdout`` random frames of the pool (error estimate ``holdout`` or ``both``);
2. a seed set of ``initial`` frames by farthest-point sampling;
3. Born charges of every queued frame (``irspec.born_charges``), ``max_concurrent`` at a time: a sliding window
   that launches the next frame's job as soon as any job ends (:class:`~aiida_irspec.workflows.batch.FanOut`);
4. fit the model (training frames; held-out frames for its validation error);
5. estimate the error: the held-out RMSE of Z, the model's RMS uncertainty on the pool, or the larger;
6. stop at ``target_error`` or when the budget of reference jobs is spent; else choose ``batch`` more frames
   (``strategy``: uncertainty, farthest_point or random) and go to 3.

A failed reference job is left out, reported and counted; as soon as more than ``max_failed_fraction`` of all
the frames queued so far (every batch) have failed, nothing more is launched, the running jobs are waited for
and kept, and the loop stops with exit code 410.
"""

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_

from aiida_irspec.calculations.fit import fit_polarization_model
from aiida_irspec.calculations.learning import learning_history, pool_uncertainty
from aiida_irspec.campaign.settings import FailureSettings, SelectionSettings
from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.data.polarization_model import PolarizationModelData
from aiida_irspec.model.settings import ModelSettings
from aiida_irspec.workflows.batch import FanOut
from aiida_irspec.workflows.born_charges import BornChargesWorkChain
from aiida_irspec.workflows.compose import check_override_keys, expose_closed, exposed_builder_inputs
from aiida_irspec.workflows.protocols import ProtocolMixin
from aiida_irspec.workflows.resumable import SubmitOnce
from aiida_irspec.workflows.select import SelectWorkChain


class ActiveLearningWorkChain(ProtocolMixin, FanOut, SubmitOnce, WorkChain):
    """Seed set, then: reference Born charges, fit, error estimate, choose more, until the target or budget."""

    FAN_OUT_UNIT = "frame"

    _protocol_tag = "active_learning"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("pool", valid_type=orm.TrajectoryData, help="Frames to learn from (e.g. a sampling NVT run).")
        spec.input("candidates", valid_type=orm.List, required=False,
                   help="Frame indices of the pool that may be used (default: all).")
        spec.input("selection", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   validator=SelectionSettings.port_validator("selection"),
                   help="Seed set, batches and stopping rule: SelectionSettings (aiida_irspec.campaign.settings); "
                        "keys not given take their defaults.")
        spec.input("model", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   validator=ModelSettings.port_validator("model"),
                   help="The polarization model: ModelSettings (aiida_irspec.model.settings), descriptor included.")
        spec.input("failures", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   validator=FailureSettings.port_validator("failures"),
                   help="Reference jobs at once and the fraction that may fail: FailureSettings.")
        expose_closed(spec, BornChargesWorkChain, "born_charges", exclude=("structure",),
                      namespace_options={"help": "The reference jobs: irspec.born_charges of each chosen frame."})
        spec.outline(
            cls.setup,
            cls.select_holdout,
            cls.select_initial,
            cls.queue_selection,
            while_(cls.fan_out_busy)(cls.fan_out_step),
            cls.fit,
            cls.estimate_error,
            while_(cls.should_continue)(
                cls.select_batch,
                cls.queue_selection,
                while_(cls.fan_out_busy)(cls.fan_out_step),
                cls.fit,
                cls.estimate_error,
            ),
            cls.results,
        )
        spec.output("model", valid_type=PolarizationModelData, help="The last fitted model.")
        spec.output("history", valid_type=orm.Dict, help="One row per fit: batch, reference jobs, errors.")
        spec.output_namespace("born_charges", valid_type=BornChargesData, dynamic=True,
                              help="Reference Born charges by frame (frame_<index>), training and held out.")
        spec.output_namespace("structures", valid_type=orm.StructureData, dynamic=True,
                              help="The reference structures by frame (frame_<index>).")
        spec.exit_code(410, "ERROR_TOO_MANY_FAILED_REFERENCES",
                       message="{failed} of {attempted} reference jobs failed (more than the allowed fraction "
                               "{fraction}); results so far are kept.")
        spec.exit_code(411, "ERROR_NO_TRAINING_DATA", message="no reference job of the seed set succeeded.")
        spec.exit_code(412, "ERROR_SELECTION_FAILED", message="choosing frames failed: {message}")

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, *, engine=None, options=None,
                                  **engine_inputs):
        """A builder (without ``pool``) from a protocol level: its ``selection``, ``model`` and ``failures``, and
        the reference jobs (``born_charges``) of the engine of ``code`` at the same level.

        structure: a structure like those of the pool (the engine's inputs are checked against it).
        overrides: a dict (or a YAML file) mirroring the ports, e.g. ``{"selection": {"budget": 20},
        "born_charges": {"engine_overrides": {...}}}``. engine_inputs: the engine's extras (VASP: potential_family,
        ...). Unknown keys and invalid values are refused (:class:`~aiida_irspec.exceptions.InputError`).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        check_override_keys(cls, inputs)
        builder = cls.get_builder()
        for group in ("selection", "model", "failures"):
            builder[group] = orm.Dict(inputs.get(group, {}))
        references = BornChargesWorkChain.get_builder_from_protocol(
            code, structure, protocol=protocol, overrides=inputs.get("born_charges"), engine=engine, options=options,
            **engine_inputs)
        builder.born_charges = exposed_builder_inputs(references, exclude=("structure",))
        return builder

    # ------------------------------------------------------------------ set-up and selection
    def setup(self):
        self.ctx.settings = {**SelectionSettings.from_dict(self.inputs.selection.get_dict()).to_dict(),
                             **FailureSettings.from_dict(self.inputs.failures.get_dict()).to_dict()}
        self.ctx.structures = {}  # frame (str) -> StructureData
        self.ctx.references = {}  # frame (str) -> BornChargesData
        self.ctx.failed = {}  # frame (str) -> pk of the failed job
        self.ctx.holdout = []
        self.ctx.training = []
        self.ctx.batch = []
        self.ctx.iteration = 0
        self.ctx.rows = []
        self.ctx.models = {}
        self.ctx.uncertainty = {}
        self.ctx.converged = False
        self.ctx.stop_reason = None

    def _select(self, number, strategy, label, model=None):
        """Launch irspec.select for ``number`` frames not chosen before."""
        inputs = {"pool": self.inputs.pool, "number": orm.Int(number), "strategy": orm.Str(strategy),
                  "seed": orm.Int(self.ctx.settings["seed"] + self.ctx.iteration),
                  "metadata": {"call_link_label": label, "label": f"{label} ({strategy})"}}
        chosen = self.ctx.holdout + self.ctx.training + [int(f) for f in self.ctx.failed]
        if chosen:
            inputs["exclude"] = orm.List(chosen)
        if "candidates" in self.inputs:
            inputs["candidates"] = self.inputs.candidates
        if "descriptor" in self.inputs.model.get_dict():
            inputs["descriptor"] = orm.Dict(self.inputs.model["descriptor"])
        if model is not None:
            inputs["model"] = model
        return self.submit(SelectWorkChain, **inputs)

    def _use_holdout(self):
        return self.ctx.settings["error_estimate"] in ("holdout", "both")

    def select_holdout(self):
        """Random held-out frames: an unbiased sample of the pool for the error estimate."""
        if not self._use_holdout():
            return None
        return ToContext(holdout_selection=self._select(self.ctx.settings["holdout"], "random", "select_holdout"))

    def select_initial(self):
        """The seed set, by farthest-point sampling (held-out frames excluded)."""
        if self._use_holdout():
            exit_code = self._take_selection("holdout_selection", self.ctx.holdout)
            if exit_code:
                return exit_code
        return ToContext(selection=self._select(self.ctx.settings["initial"], "farthest_point", "select_initial"))

    def select_batch(self):
        """The next batch, by the chosen strategy (uncertainty uses the current model)."""
        self.ctx.iteration += 1
        remaining = self.ctx.settings["budget"] - self._attempted()
        number = min(self.ctx.settings["batch"], remaining)
        strategy = self.ctx.settings["strategy"]
        model = self.ctx.model if strategy == "uncertainty" else None
        return ToContext(selection=self._select(number, strategy, f"select_batch_{self.ctx.iteration}", model))

    def _take_selection(self, key, target):
        """Move the frames of a finished selection into ``target`` and queue their reference jobs; an exit code on
        failure."""
        node = self.ctx[key]
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SELECTION_FAILED.format(message=f"{node.process_label}<{node.pk}> "
                                                                         f"exit {node.exit_status}")
        frames = node.outputs.indices.get_list()
        target.extend(frames)
        for frame in frames:
            self.ctx.structures[str(frame)] = node.outputs.structures[f"frame_{frame}"]
        self.fan_out("reference job", frames, self.ctx.settings["max_concurrent"],
                     self.ctx.settings["max_failed_fraction"])
        self.ctx.batch = frames
        return None

    def queue_selection(self):
        return self._take_selection("selection", self.ctx.training)

    # ------------------------------------------------------------------ reference calculations (FanOut)
    def _attempted(self):
        return len(self.ctx.references) + len(self.ctx.failed)

    def launch_job(self, kind, key):
        """The Born charges of frame ``key``."""
        inputs = AttributeDict(self.exposed_inputs(BornChargesWorkChain, namespace="born_charges"))
        inputs.structure = self.ctx.structures[str(key)]
        inputs.metadata = {"call_link_label": f"born_charges_frame_{key}", "label": f"born charges frame {key}"}
        return self.submit(BornChargesWorkChain, **inputs)

    def job_succeeded(self, kind, key, node):
        self.ctx.references[str(key)] = node.outputs.born_charges

    def too_many_failures(self, failed, attempted):
        """Exit code 410, with the references (and the model, if any) attached."""
        self.ctx.stop_reason = "too many failed reference jobs"
        self._attach_results()
        return self.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.format(
            failed=failed, attempted=attempted, fraction=self.ctx.settings["max_failed_fraction"])

    # ------------------------------------------------------------------ fit and error
    def _namespace(self, frames):
        """(structures, born_charges) namespaces of the frames with successful references."""
        done = [str(f) for f in frames if str(f) in self.ctx.references]
        return ({f"frame_{f}": self.ctx.structures[f] for f in done},
                {f"frame_{f}": self.ctx.references[f] for f in done})

    def fit(self):
        """Fit the model to every training reference; held-out references give its validation error."""
        structures, born_charges = self._namespace(self.ctx.training)
        if not born_charges:
            return self.exit_codes.ERROR_NO_TRAINING_DATA
        inputs = {"settings": self.inputs.model, "structures": structures, "born_charges": born_charges}
        holdout_structures, holdout_born_charges = self._namespace(self.ctx.holdout)
        if self._use_holdout() and holdout_born_charges:
            inputs.update(holdout_structures=holdout_structures, holdout_born_charges=holdout_born_charges)
        self.report(f"iteration {self.ctx.iteration}: fitting the model on {len(born_charges)} structures")
        key = f"iteration_{self.ctx.iteration}"
        self.ctx.model = fit_polarization_model(
            **inputs, metadata={"call_link_label": f"fit_{key}",
                                "label": f"fit on {len(born_charges)} structures (iteration {self.ctx.iteration})"})
        self.ctx.models[key] = self.ctx.model
        return None

    def estimate_error(self):
        """Held-out RMSE of Z, RMS uncertainty on the pool, or the larger; record the row of the history."""
        key = f"iteration_{self.ctx.iteration}"
        estimate = self.ctx.settings["error_estimate"]
        errors = []
        if estimate in ("holdout", "both"):
            errors.append(self.ctx.model.born_charges_rmse)
        if estimate in ("uncertainty", "both"):
            inputs = {"model": self.ctx.model, "pool": self.inputs.pool,
                      "metadata": {"call_link_label": f"uncertainty_{key}"}}
            if "candidates" in self.inputs:
                inputs["candidates"] = self.inputs.candidates
            self.ctx.uncertainty[key] = pool_uncertainty(**inputs)
            errors.append(self.ctx.uncertainty[key]["rms"])
        error = max(errors)
        self.ctx.converged = error <= self.ctx.settings["target_error"]
        self.ctx.rows.append({"iteration": self.ctx.iteration, "batch": list(self.ctx.batch),
                              "attempted": self._attempted(), "failed": len(self.ctx.failed), "error": error})
        self.report(f"iteration {self.ctx.iteration}: {len(self.ctx.references)} references "
                    f"({len(self.ctx.failed)} failed), error {error:.4f} |e| (target "
                    f"{self.ctx.settings['target_error']})")

    def should_continue(self):
        if self.ctx.converged:
            self.ctx.stop_reason = "target error reached"
            return False
        if self._attempted() >= self.ctx.settings["budget"]:
            self.ctx.stop_reason = "budget of reference jobs spent"
            return False
        return True

    # ------------------------------------------------------------------ outputs
    def _attach_results(self):
        """Attach the model, the references and the history (also when the loop stops early)."""
        if "model" in self.ctx:
            self.out("model", self.ctx.model)
        for frame, node in self.ctx.references.items():
            self.out(f"born_charges.frame_{frame}", node)
            self.out(f"structures.frame_{frame}", self.ctx.structures[frame])
        if self.ctx.rows:
            log = {"rows": self.ctx.rows, "holdout": self.ctx.holdout,
                   "failed_frames": sorted(map(int, self.ctx.failed)),
                   "failed_jobs": sorted(pk for pk in self.ctx.failed.values() if pk is not None),
                   "target_error": self.ctx.settings["target_error"],
                   "converged": self.ctx.converged, "stop_reason": self.ctx.stop_reason,
                   "strategy": self.ctx.settings["strategy"], "error_estimate": self.ctx.settings["error_estimate"]}
            used = {row_key: self.ctx.models[row_key]
                    for row_key in (f"iteration_{r['iteration']}" for r in self.ctx.rows)}
            self.out("history", learning_history(orm.Dict(log), models=used, uncertainty=self.ctx.uncertainty,
                                                 metadata={"call_link_label": "history"}))

    def results(self):
        self.report(f"stopped: {self.ctx.stop_reason}")
        self._attach_results()
