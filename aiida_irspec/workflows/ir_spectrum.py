"""``irspec.ir_spectrum``: N independent NVE runs from decorrelated NVT snapshots, dP/dt of each, one spectrum.

1. an NVT run (``irspec.md``) of ``thermalization + runs * decorrelation`` fs, stored every ``decorrelation``;
2. its last ``runs`` frames (positions and velocities) start ``runs`` NVE runs (``irspec.md``);
3. dP/dt of the model along each NVE trajectory (``irspec.predict_pdot``), launched as soon as its NVE run
   ends; NVE and prediction jobs share one sliding window of ``max_concurrent`` jobs (a run's prediction before
   the next NVE run; :class:`~aiida_irspec.workflows.batch.FanOut`). The trajectory is read where it lives when
   the MD process gives its remote folder on the computer of the predict code and the engine's file there
   is one ``aiida-irspec pdot`` reads (the engine adapter's ``remote_trajectory``; tblite),
   so nothing is copied; else from the stored TrajectoryData;
4. the Green-Kubo spectrum of each run, their mean and +-2 standard-error band (``aggregate_spectra``).

With ``reference_dipoles`` the NVE runs also record the engine's own dipole (tblite: molecules and
clusters), and ``reference_spectrum`` is the same aggregation of those dipoles along the same runs: the
validation of the model against its reference (with ``route`` "polarization" the model's P is processed
exactly like the dipoles; with "velocity" the two frequency grids agree only when the correlation time is
set by the window, not by the run length). A failed NVE or prediction job is reported and its run left out;
as soon as more than ``max_failed_fraction`` of the runs have failed, nothing more is launched, the running jobs
are waited for and kept, and the WorkChain stops with 420 after aggregating the runs it has.
"""

import math

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_

from aiida_irspec.calculations.aggregate import aggregate_spectra
from aiida_irspec.calculations.predict import PredictPdotCalculation
from aiida_irspec.calculations.snapshots import extract_snapshots, trajectory_polarization
from aiida_irspec.data.ir_spectrum import IRSpectrumData
from aiida_irspec.campaign.settings import FailureSettings, RunSettings
from aiida_irspec.data.polarization_model import PolarizationModelData
from aiida_irspec.spectra.settings import SpectrumSettings
from aiida_irspec.workflows.batch import FanOut
from aiida_irspec.workflows.engines import get_engine
from aiida_irspec.workflows.md import MdWorkChain
from aiida_irspec.workflows.compose import check_override_keys, expose_closed, exposed_builder_inputs
from aiida_irspec.workflows.protocols import ProtocolMixin
from aiida_irspec.workflows.resumable import SubmitOnce

MD_OWN = ("structure", "ensemble", "temperature", "steps", "timestep", "stride", "seed", "initial_velocities")
#: Largest temperature taken (K): far above any molecular dynamics of matter.
MAX_TEMPERATURE = 1e5


def validate_temperature(value, _):
    """Port validator of a temperature (K): positive, finite and at most MAX_TEMPERATURE."""
    if not 0 < value.value <= MAX_TEMPERATURE:
        return f"temperature: {value.value!r} K is out of range; expected > 0 and <= {MAX_TEMPERATURE:g}"
    return None


def _validate_route(value, _):
    from aiida_irspec.campaign.pdot import ROUTES

    if value.value not in ROUTES:
        return f"predict.route: {value.value!r} is not allowed; expected one of {', '.join(ROUTES)}"
    return None


def _validate_inputs(inputs, _):
    """Rules across ports: the spectrum's normalisation, the engine's dipoles."""
    analysis = {**SpectrumSettings.defaults(), **inputs["analysis"].get_dict()}
    problems = SpectrumSettings.normalisation_problems(analysis, "analysis.")
    molecules, structure = analysis.get("molecules"), inputs.get("structure")
    if molecules is not None and structure is not None and molecules > len(structure.sites):
        problems.append(f"analysis.molecules: {molecules} molecules in a structure of {len(structure.sites)} atoms")
    if inputs.get("reference_dipoles") and inputs["reference_dipoles"].value:
        from aiida_irspec.workflows.engines import ENGINES

        engine = ENGINES.get(inputs["md"]["engine"].value)
        if engine is not None and engine.dipole_overrides is None:
            problems.append(f"reference_dipoles: the {engine.name} engine does not record its own dipole")
    return "; ".join(problems) or None


class IRSpectrumWorkChain(ProtocolMixin, FanOut, SubmitOnce, WorkChain):
    """IR spectrum with a confidence band from a polarization model along independent NVE runs."""

    FAN_OUT_UNIT = "run"

    _protocol_tag = "ir_spectrum"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="Starting structure of the NVT run.")
        spec.input("initial_velocities", valid_type=orm.ArrayData, required=False,
                   help="Velocities (N, 3) A/fs to start the NVT run from (e.g. the end of an earlier run).")
        spec.input("model", valid_type=PolarizationModelData, help="The polarization model.")
        spec.input("temperature", valid_type=(orm.Float, orm.Int), validator=validate_temperature,
                   help="Temperature (K) of the NVT run that gives the snapshots and of the spectrum (its beta).")
        spec.input("runs", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   validator=RunSettings.port_validator("runs"),
                   help="The NVE runs: RunSettings (aiida_irspec.campaign.settings); keys not given take defaults.")
        spec.input("analysis", valid_type=orm.Dict, validator=SpectrumSettings.port_validator("analysis"),
                   help="From the runs to the spectrum: SpectrumSettings (aiida_irspec.spectra.settings); exactly "
                        "one of volume (periodic cells) and molecules.")
        spec.input("failures", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   validator=FailureSettings.port_validator("failures"),
                   help="Jobs at once (NVE and prediction jobs share the window) and the fraction that may fail.")
        spec.input("reference_dipoles", valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help="Also record the engine's own dipole along the NVE runs and give its spectrum "
                        "(reference_spectrum): the check of the model (engines that have one: tblite).")
        expose_closed(spec, MdWorkChain, "md", exclude=MD_OWN,
                      namespace_options={"help": "The NVT run and the NVE runs: irspec.md (the engine and its "
                                                 "settings)."})
        spec.input_namespace("predict", help="The prediction jobs (irspec.predict_pdot) along each NVE run.")
        spec.input("predict.code", valid_type=orm.AbstractCode, help="The `aiida-irspec` Code for irspec.predict_pdot.")
        spec.input("predict.options", valid_type=orm.Dict, required=False,
                   help="metadata.options of the prediction jobs.")
        spec.input("predict.route", valid_type=orm.Str, default=lambda: orm.Str("auto"), validator=_validate_route,
                   help="How the prediction jobs go through a trajectory (aiida_irspec.campaign.pdot.ROUTES).")
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.run_nvt,
            cls.extract_snapshots,
            while_(cls.fan_out_busy)(cls.fan_out_step),
            cls.aggregate,
        )
        spec.output("spectrum", valid_type=IRSpectrumData, help="Mean spectrum of the runs with its band.")
        spec.output("reference_spectrum", valid_type=IRSpectrumData, required=False,
                    help="The same from the engine's own dipoles (reference_dipoles).")
        spec.output_namespace("pdot", valid_type=orm.ArrayData, dynamic=True, help="dP/dt of each run (run_<k>).")
        spec.output_namespace("trajectories", valid_type=orm.TrajectoryData, dynamic=True,
                              help="The NVE trajectories (run_<k>).")
        spec.output("nvt_trajectory", valid_type=orm.TrajectoryData, help="The NVT run the snapshots come from.")
        spec.exit_code(420, "ERROR_TOO_MANY_FAILED_RUNS", message="{failed} of {attempted} NVE/prediction jobs "
                       "failed (more than the allowed fraction {fraction}); results so far are kept.")
        spec.exit_code(421, "ERROR_NVT_FAILED", message="the NVT run <{pk}> failed: {message}")

    @classmethod
    def get_builder_from_protocol(cls, code, predict_code, structure, protocol=None, overrides=None, *, engine=None,
                                  options=None, **engine_inputs):
        """A builder (without ``model``) from a protocol level: its ``runs``, ``analysis`` and ``failures``, the
        MD (``md``) of the engine of ``code`` at the same level, and the prediction jobs on ``predict_code``.

        The spectrum's normalisation, when ``overrides`` give none, follows the structure: the volume of a
        periodic cell, else the number of molecules (bonded clusters of atoms). ``temperature`` defaults to the
        protocol's. overrides: a dict (or a YAML file) mirroring the ports.
        """
        from aiida_irspec.spectra.settings import normalisation_of

        inputs = cls.get_protocol_inputs(protocol, overrides)
        check_override_keys(cls, inputs)
        builder = cls.get_builder()
        builder.structure = structure
        builder.temperature = orm.Float(inputs["temperature"])
        analysis = dict(inputs.get("analysis", {}))
        if analysis.get("volume") is None and analysis.get("molecules") is None:
            analysis.update(normalisation_of(structure.get_ase()))
        builder.analysis = orm.Dict(analysis)
        for group in ("runs", "failures"):
            builder[group] = orm.Dict(inputs.get(group, {}))
        if "reference_dipoles" in inputs:
            builder.reference_dipoles = orm.Bool(inputs["reference_dipoles"])
        md = MdWorkChain.get_builder_from_protocol(code, structure, protocol=protocol, overrides=inputs.get("md"),
                                                   engine=engine, options=options, **engine_inputs)
        builder.md = exposed_builder_inputs(md, exclude=MD_OWN)
        builder.predict.code = predict_code
        predict = inputs.get("predict", {})
        if "route" in predict:
            builder.predict.route = orm.Str(predict["route"])
        if options or predict.get("options"):
            builder.predict.options = orm.Dict({**(options or {}), **predict.get("options", {})})
        return builder

    def _settings(self):
        """The runs', failures' and prediction settings as one flat dict (defaults filled in)."""
        runs = RunSettings.from_dict(self.inputs.runs.get_dict())
        failures = FailureSettings.from_dict(self.inputs.failures.get_dict())
        return {"temperature": float(self.inputs.temperature.value), "runs": runs.number, "steps": runs.steps,
                "timestep": runs.timestep, "stride": runs.stride, "decorrelation": runs.decorrelation,
                "thermalization": runs.thermalization, "seed": runs.seed, "max_concurrent": failures.max_concurrent,
                "max_failed_fraction": failures.max_failed_fraction,
                "reference_dipoles": self.inputs.reference_dipoles.value, "route": self.inputs.predict.route.value}

    def _md_inputs(self, label, **values):
        inputs = AttributeDict(self.exposed_inputs(MdWorkChain, namespace="md"))
        inputs.update(values)
        inputs.metadata = {"call_link_label": label.replace(" ", "_"), "label": label}
        return inputs

    def run_nvt(self):
        """NVT from the structure; frames every ``decorrelation`` fs, the last ``runs`` become snapshots."""
        settings = self._settings()
        self.ctx.failed = {}
        self.ctx.stride = max(1, round(settings["decorrelation"] / settings["timestep"]))
        self.ctx.skip = math.ceil(settings["thermalization"] / settings["decorrelation"])
        steps = (self.ctx.skip + settings["runs"]) * self.ctx.stride
        inputs = self._md_inputs("nvt", structure=self.inputs.structure, ensemble=orm.Str("nvt"),
                                 temperature=orm.Float(settings["temperature"]), steps=orm.Int(steps),
                                 timestep=orm.Float(settings["timestep"]), stride=orm.Int(self.ctx.stride),
                                 seed=orm.Int(settings["seed"]))
        if "initial_velocities" in self.inputs:
            inputs.initial_velocities = self.inputs.initial_velocities
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"NVT run {node.process_label}<{node.pk}>: {steps} steps, snapshots every "
                    f"{self.ctx.stride * settings['timestep']} fs")
        return ToContext(nvt=node)

    def extract_snapshots(self):
        node = self.ctx.nvt
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_NVT_FAILED.format(pk=node.pk, message=node.exit_message)
        trajectory = node.outputs.trajectory
        self.out("nvt_trajectory", trajectory)
        frames = list(range(self.ctx.skip + 1, trajectory.numsteps))
        self.ctx.snapshots = extract_snapshots(trajectory, orm.List(frames),
                                               metadata={"call_link_label": "snapshots"})
        self.ctx.pdot = {}
        settings = self._settings()
        self.fan_out("NVE run", frames, settings["max_concurrent"], settings["max_failed_fraction"])
        return None

    # ------------------------------------------------------------------ NVE and prediction jobs (FanOut)
    def launch_job(self, kind, key):
        return self._launch_nve(key) if kind == "NVE run" else self._launch_predict(key)

    def _launch_nve(self, k):
        """The NVE run from snapshot ``k``."""
        settings = self._settings()
        inputs = self._md_inputs(f"nve run {k}", structure=self.ctx.snapshots[f"structure_{k}"],
                                 initial_velocities=self.ctx.snapshots[f"velocities_{k}"],
                                 ensemble=orm.Str("nve"), temperature=orm.Float(settings["temperature"]),
                                 steps=orm.Int(settings["steps"]), timestep=orm.Float(settings["timestep"]),
                                 stride=orm.Int(settings["stride"]), seed=orm.Int(settings["seed"] + k))
        if settings["reference_dipoles"]:
            overrides = inputs.engine_overrides.get_dict() if "engine_overrides" in inputs else {}
            inputs.engine_overrides = orm.Dict(get_engine(inputs.engine.value).with_dipoles(overrides))
        return self.submit(MdWorkChain, **inputs)

    def _launch_predict(self, k):
        """dP/dt of the model along NVE run ``k``."""
        inputs = {"code": self.inputs.predict.code, "model": self.inputs.model,
                  **self._trajectory_inputs(self.ctx[f"nve_{k}"]),
                  "settings": orm.Dict({"route": self._settings()["route"]}),
                  "metadata": {"call_link_label": f"pdot_run_{k}", "label": f"dP/dt run {k}"}}
        if "options" in self.inputs.predict:
            inputs["metadata"]["options"] = self.inputs.predict.options.get_dict()
        return self.submit(PredictPdotCalculation, **inputs)

    def job_succeeded(self, kind, key, node):
        """An NVE run: keep its trajectory and queue its prediction; a prediction: keep its dP/dt."""
        if kind == "NVE run":
            self.ctx[f"nve_{key}"] = node
            self.out(f"trajectories.run_{key}", node.outputs.trajectory)
            self.fan_out_follow("prediction", key)
        else:
            self.ctx.pdot[f"run_{key}"] = node.outputs.pdot
            self.out(f"pdot.run_{key}", node.outputs.pdot)

    def too_many_failures(self, failed, attempted):
        """Exit code 420, after aggregating the runs there are."""
        if self.ctx.pdot:
            self.aggregate()
        return self.exit_codes.ERROR_TOO_MANY_FAILED_RUNS.format(
            failed=failed, attempted=attempted, fraction=self._settings()["max_failed_fraction"])

    def _trajectory_inputs(self, md_node):
        """The trajectory inputs of a prediction job: the MD run's remote file, where it can be read, else
        the stored TrajectoryData."""
        filename = get_engine(self.inputs.md.engine.value).remote_trajectory
        remote = md_node.outputs.remote_folder if "remote_folder" in md_node.outputs else None
        if filename and remote is not None and remote.computer.uuid == self.inputs.predict.code.computer.uuid:
            return {"remote_trajectory": remote, "trajectory_filename": orm.Str(filename)}
        return {"trajectory": md_node.outputs.trajectory}

    def _spectrum_settings(self):
        return orm.Dict({**self.inputs.analysis.get_dict(), "temperature": float(self.inputs.temperature.value)})

    def aggregate(self):
        """The mean spectrum of the runs (and of the engine's own dipoles, when recorded)."""
        self.report(f"aggregating {len(self.ctx.pdot)} runs ({len(self.ctx.failed)} failed)")
        settings = self._spectrum_settings()
        self.out("spectrum", aggregate_spectra(settings, **self.ctx.pdot,
                                               metadata={"call_link_label": "aggregate",
                                                         "label": f"spectrum of {len(self.ctx.pdot)} runs"}))
        if self._settings()["reference_dipoles"]:
            dipoles = {label: trajectory_polarization(self.ctx[f"nve_{label.split('_')[1]}"].outputs.trajectory,
                                                      metadata={"call_link_label": f"dipoles_{label}"})
                       for label in self.ctx.pdot}
            self.out("reference_spectrum", aggregate_spectra(settings, **dipoles,
                                                             metadata={"call_link_label": "aggregate_reference",
                                                                       "label": "spectrum of the engine dipoles"}))
