"""``irspec.campaign``: sampling MD -> active learning -> IR spectrum, for either engine, from a campaign spec.

The spec (:mod:`aiida_irspec.campaign.spec`, validated again here) says everything; :func:`builder_from_spec`
turns a loaded spec into the inputs (codes by label, the structure, the VASP extras). The campaign:

1. ``sampling``: an NVT run (``irspec.md``) whose frames after ``equilibration`` form the pool;
2. ``learning``: ``irspec.active_learning`` on the pool with the engine's Born charges;
3. ``spectrum``: ``irspec.ir_spectrum`` with the learned model, starting from the end of the sampling run.
   On tblite the NVE runs also record tblite's own dipole, and ``reference_spectrum`` is the spectrum of
   those dipoles along the same runs (the model's P goes through the same finite differences).

A sub-process that stops for too many failed jobs (410, 420) stops the campaign with the same exit code;
everything computed so far stays attached.
"""

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_irspec.campaign.spec import validate_spec
from aiida_irspec.data.ir_spectrum import IRSpectrumData
from aiida_irspec.data.polarization_model import PolarizationModelData
from aiida_irspec.exceptions import InputError
from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain
from aiida_irspec.workflows.ir_spectrum import IRSpectrumWorkChain
from aiida_irspec.workflows.md import MdWorkChain
from aiida_irspec.workflows.resumable import SubmitOnce

STAGES = ("sampling", "learning", "spectrum")


def _validate_spec(value, _):
    spec = {key: item for key, item in value.get_dict().items() if key != "spec_file"}
    try:
        validate_spec(spec)
    except InputError as error:
        return str(error)
    return None


def _engine_parameters(spec):
    """tblite: the spec's method, charge and multiplicity as engine parameters; VASP: none."""
    if spec["engine"] != "tblite":
        return {}
    return {key: spec["tblite"][key] for key in ("method", "charge", "multiplicity")}


def _overrides(spec, section, **parameters):
    """The engine overrides of a spec section with the campaign-wide engine parameters merged in."""
    overrides = dict(spec[section]["overrides"])
    merged = {**_engine_parameters(spec), **parameters, **overrides.get("parameters", {})}
    if merged:
        overrides["parameters"] = merged
    return overrides


class CampaignWorkChain(SubmitOnce, WorkChain):
    """An IR spectrum from scratch: sampling MD, active learning of the polarization model, NVE spectrum runs."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("spec", valid_type=orm.Dict, validator=_validate_spec,
                   help="The validated campaign spec (aiida_irspec.campaign.spec.load_spec).")
        spec.input("structure", valid_type=orm.StructureData, help="The starting structure (supercell applied).")
        spec.input("engine_code", valid_type=orm.AbstractCode, help="Code of the engine (tblite or VASP).")
        spec.input("predict_code", valid_type=orm.AbstractCode, help="`aiida-irspec` Code for irspec.predict_pdot.")
        spec.input_namespace("engine_inputs", valid_type=orm.Data, dynamic=True, required=False,
                             help="Engine extras of every engine job (VASP: potential_family, potential_mapping, "
                                  "kpoints_distance).")
        spec.input("ml_ff", valid_type=(orm.SinglefileData, orm.RemoteData), required=False,
                   help="VASP machine-learned force field for the MD runs (ML_MODE = run).")
        spec.outline(cls.run_sampling, cls.run_learning, cls.run_spectrum, cls.results)
        spec.output("sampling_trajectory", valid_type=orm.TrajectoryData, help="The NVT run of the pool.")
        spec.output("model", valid_type=PolarizationModelData, required=False, help="The learned model.")
        spec.output("history", valid_type=orm.Dict, required=False, help="History of the active learning.")
        spec.output("spectrum", valid_type=IRSpectrumData, required=False, help="The IR spectrum with its band.")
        spec.output("reference_spectrum", valid_type=IRSpectrumData, required=False,
                    help="tblite only: the spectrum of the engine's own dipoles along the same NVE runs.")
        spec.exit_code(410, "ERROR_TOO_MANY_FAILED_REFERENCES",
                       message="active learning stopped: too many failed reference jobs ({message})")
        spec.exit_code(420, "ERROR_TOO_MANY_FAILED_RUNS", message="spectrum stopped: too many failed NVE or "
                                                                  "prediction jobs ({message})")
        spec.exit_code(430, "ERROR_SAMPLING_FAILED", message="the sampling MD <{pk}> failed: {message}")
        spec.exit_code(431, "ERROR_LEARNING_FAILED", message="active learning <{pk}> failed: {message}")
        spec.exit_code(432, "ERROR_SPECTRUM_FAILED", message="the spectrum <{pk}> failed: {message}")

    # ------------------------------------------------------------------ helpers
    @property
    def campaign(self):
        return self.inputs.spec.get_dict()

    def _engine_common(self, section, md=False):
        """Inputs shared by the engine WorkChains: engine, code, protocol, overrides, options, extras.
        MD runs (``md``) also get the tblite friction and the VASP force field."""
        spec = self.campaign
        tblite_md = {"friction": spec["tblite"]["friction"]} if md and spec["engine"] == "tblite" else {}
        common = {"engine": orm.Str(spec["engine"]), "code": self.inputs.engine_code,
                  "protocol": orm.Str(spec[section]["protocol"]),
                  "overrides": orm.Dict(_overrides(spec, section, **tblite_md)),
                  "engine_inputs": dict(self.inputs.get("engine_inputs", {}))}
        if spec["codes"]["options"]:
            common["options"] = orm.Dict(spec["codes"]["options"])
        if md and "ml_ff" in self.inputs:
            common["engine_inputs"]["ml_ff"] = self.inputs.ml_ff
        return common

    def _label(self, stage):
        return f"{self.campaign['name']}: {stage}"

    # ------------------------------------------------------------------ stages
    def run_sampling(self):
        """NVT run whose frames are the pool of candidate configurations."""
        spec = self.campaign
        sampling = spec["sampling"]
        inputs = self._engine_common("sampling", md=True)
        inputs.update(structure=self.inputs.structure, ensemble=orm.Str("nvt"),
                      temperature=orm.Float(spec["temperature"]), steps=orm.Int(sampling["steps"]),
                      timestep=orm.Float(sampling["timestep"]), stride=orm.Int(sampling["stride"]),
                      seed=orm.Int(sampling["seed"]),
                      metadata={"call_link_label": "sampling", "label": self._label("sampling")})
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"stage 1/3 sampling: NVT {sampling['steps']} steps at {spec['temperature']} K, "
                    f"{node.process_label}<{node.pk}>")
        return ToContext(sampling=node)

    def run_learning(self):
        """Active learning on the pool (frames after the equilibration)."""
        node = self.ctx.sampling
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED.format(pk=node.pk, message=node.exit_message)
        pool = node.outputs.trajectory
        self.out("sampling_trajectory", pool)
        spec = self.campaign
        first = -(-spec["sampling"]["equilibration"] // spec["sampling"]["stride"])  # ceil: frames after it
        candidates = list(range(first, pool.numsteps))
        learning = spec["active_learning"]
        settings = {key: learning[key] for key in ("strategy", "initial", "batch", "budget", "target_error",
                                                    "error_estimate", "holdout", "seed")}
        settings.update(max_concurrent=spec["born_charges"]["max_concurrent"],
                        max_failed_fraction=spec["failures"]["max_failed_fraction"])
        model = spec["model"]
        descriptor_keys = ("cutoff", "n_radial", "l_max", "gaussian_width", "cutoff_function", "cutoff_width",
                           "body_order", "transfer_cutoff")
        model_settings = {"descriptor": {key: model[key] for key in descriptor_keys},
                          **{key: model[key] for key in ("kind", "baseline", "basis", "n_sparse", "regularization")
                             if model[key] is not None}}
        node = self.submit(ActiveLearningWorkChain, pool=pool, candidates=orm.List(candidates),
                           settings=orm.Dict(settings), model_settings=orm.Dict(model_settings),
                           born_charges=self._engine_common("born_charges"),
                           metadata={"call_link_label": "learning", "label": self._label("active learning")})
        self.report(f"stage 2/3 active learning: pool of {len(candidates)} frames, "
                    f"{node.process_label}<{node.pk}>")
        return ToContext(learning=node)

    def run_spectrum(self):
        """NVE runs from the end of the sampling run with the learned model."""
        node = self.ctx.learning
        for name in ("model", "history"):
            if name in node.outputs:
                self.out(name, node.outputs[name])
        if node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.status:
            return self.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.format(message=node.exit_message)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LEARNING_FAILED.format(pk=node.pk, message=node.exit_message)
        spec = self.campaign
        spectrum = spec["spectrum"]
        tblite = spec["engine"] == "tblite"
        settings = {"temperature": float(spec["temperature"]), "runs": spectrum["runs"], "steps": spectrum["steps"],
                    "timestep": spectrum["timestep"], "stride": spectrum["stride"],
                    "decorrelation": spectrum["decorrelation"], "thermalization": 0.0, "seed": spectrum["seed"],
                    "max_concurrent": spec["born_charges"]["max_concurrent"],
                    "max_failed_fraction": spec["failures"]["max_failed_fraction"],
                    "reference_dipoles": tblite, "route": "polarization" if tblite else "velocity"}
        aggregate = {"window": spectrum["window"], "quantum_correction": spectrum["quantum_correction"]}
        if spectrum["window"] != "none":
            aggregate["width_cm1"] = spectrum["width_cm1"]
        if spectrum["max_correlation"] is not None:
            aggregate["max_correlation_fs"] = spectrum["max_correlation"]
        if spec["structure"]["molecules"] is not None:
            aggregate["molecules"] = spec["structure"]["molecules"]
        else:
            aggregate["volume"] = float(self.inputs.structure.get_cell_volume())
        sampling = self.ctx.sampling.outputs
        inputs = {"structure": sampling.final_structure, "model": node.outputs.model,
                  "settings": orm.Dict(settings), "spectrum": orm.Dict(aggregate),
                  "md": self._engine_common("sampling", md=True),
                  "predict": {"code": self.inputs.predict_code},
                  "metadata": {"call_link_label": "spectrum", "label": self._label("spectrum")}}
        if "final_velocities" in sampling:
            inputs["initial_velocities"] = sampling.final_velocities
        if spec["codes"]["options"]:
            inputs["predict"]["options"] = orm.Dict(spec["codes"]["options"])
        node = self.submit(IRSpectrumWorkChain, **inputs)
        self.report(f"stage 3/3 spectrum: {spectrum['runs']} NVE runs of {spectrum['steps']} steps, "
                    f"{node.process_label}<{node.pk}>")
        return ToContext(spectrum=node)

    def results(self):
        node = self.ctx.spectrum
        for name in ("spectrum", "reference_spectrum"):
            if name in node.outputs:
                self.out(name, node.outputs[name])
        if node.exit_status == IRSpectrumWorkChain.exit_codes.ERROR_TOO_MANY_FAILED_RUNS.status:
            return self.exit_codes.ERROR_TOO_MANY_FAILED_RUNS.format(message=node.exit_message)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SPECTRUM_FAILED.format(pk=node.pk, message=node.exit_message)
        self.report("campaign finished")
        return None


def builder_from_spec(spec):
    """A builder of :class:`CampaignWorkChain` from a loaded spec (:func:`~aiida_irspec.campaign.spec.load_spec`):
    codes loaded by label, the structure read (supercell applied), VASP extras as nodes."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from aiida_irspec.campaign.spec import code_label, load_structure
    from aiida_irspec.data.frames import structure_from_atoms

    builder = CampaignWorkChain.get_builder()
    builder.spec = orm.Dict(spec)
    builder.structure = structure_from_atoms(load_structure(spec))
    for port, key in (("engine_code", "engine"), ("predict_code", "predict")):
        label = code_label(spec, key)
        try:
            builder[port] = orm.load_code(label)
        except (NotExistent, MultipleObjectsError) as error:
            raise InputError(f"codes.{key}: no unique AiiDA code {label!r} ({error}); see `verdi code list` "
                             f"(`aiida-irspec cluster setup` makes the codes of a computer)") from None
    if spec["engine"] == "vasp":
        vasp = spec["vasp"]
        extras = {"potential_family": orm.Str(vasp["potential_family"])}
        if vasp["potential_mapping"]:
            extras["potential_mapping"] = orm.Dict(vasp["potential_mapping"])
        if vasp["kpoints_distance"] is not None:
            extras["kpoints_distance"] = orm.Float(vasp["kpoints_distance"])
        builder.engine_inputs = extras
        if vasp["ml_ff"] is not None:
            builder.ml_ff = orm.SinglefileData(vasp["ml_ff"])
    builder.metadata.label = spec["name"]
    builder.metadata.description = spec["description"]
    return builder
