"""``irspec.campaign``: an IR spectrum from scratch, composed of three stages whose inputs and outputs it exposes.

1. ``sampling`` (``irspec.md``, NVT at ``temperature``): its frames after ``equilibration`` steps are the pool;
2. ``learning`` (``irspec.active_learning``): the polarization model, learned from Born charges of the pool;
3. ``spectrum`` (``irspec.ir_spectrum``): NVE runs from the end of the sampling run, dP/dt of the model, the
   spectrum with its band.

Each namespace holds the inputs of its WorkChain (but for what the campaign passes: the structure, the
temperature, the pool, the model, the starting velocities) and, in the outputs, its outputs. Build it with
:meth:`CampaignWorkChain.get_builder_from_protocol` (or :func:`builder_from_file` for a campaign file); every
setting is checked when the inputs are validated, before any process exists.

A stage that stops for too many failed jobs (410, 420) stops the campaign with the same exit code; whatever was
computed stays attached.
"""

import math

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_irspec.campaign.settings import MAX_STEPS
from aiida_irspec.exceptions import InputError
from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain
from aiida_irspec.workflows.ir_spectrum import IRSpectrumWorkChain, validate_temperature
from aiida_irspec.workflows.md import MdWorkChain
from aiida_irspec.workflows.compose import check_override_keys, expose_closed, exposed_builder_inputs
from aiida_irspec.workflows.engine_base import plain_inputs
from aiida_irspec.workflows.protocols import ProtocolMixin
from aiida_irspec.workflows.resumable import SubmitOnce

#: Inputs of each stage that the campaign sets itself (so they are not exposed).
SAMPLING_OWN = ("structure", "temperature", "ensemble", "initial_velocities")
LEARNING_OWN = ("pool", "candidates")
SPECTRUM_OWN = ("structure", "temperature", "model", "initial_velocities")


def _validate_equilibration(value, _):
    if not 0 <= value.value <= MAX_STEPS:
        return f"equilibration: {value.value} is out of range; expected MD steps >= 0 and <= {MAX_STEPS}"
    return None


def _validate_inputs(inputs, _):
    """The rules across the stages (:func:`~aiida_irspec.campaign.spec.cross_problems`) and the engine's structure."""
    from aiida_irspec.campaign.spec import cross_problems
    from aiida_irspec.workflows.engines import ENGINES

    problems = cross_problems(plain_inputs(inputs))
    engine = ENGINES.get(inputs["sampling"]["engine"].value) if "engine" in inputs["sampling"] else None
    if engine is not None and "structure" in inputs:
        message = engine.check_structure(inputs["structure"])
        if message:
            problems.append(f"structure: {message}")
    return "; ".join(problems) or None


class CampaignWorkChain(ProtocolMixin, SubmitOnce, WorkChain):
    """Sampling MD, active learning of the polarization model, the IR spectrum from NVE runs."""

    _protocol_tag = "campaign"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The starting structure.")
        spec.input("temperature", valid_type=(orm.Float, orm.Int), validator=validate_temperature,
                   help="Temperature (K) of the sampling run and of the spectrum.")
        spec.input("equilibration", valid_type=orm.Int, default=lambda: orm.Int(0), validator=_validate_equilibration,
                   help="MD steps at the start of the sampling run left out of the pool.")
        spec.input("spec_file", valid_type=orm.Dict, required=False,
                   help="The campaign file the inputs came from: its name and sha256 (no local path).")
        expose_closed(spec, MdWorkChain, "sampling", exclude=SAMPLING_OWN,
                      namespace_options={"help": "The NVT run whose frames are the pool (irspec.md)."})
        expose_closed(spec, ActiveLearningWorkChain, "learning", exclude=LEARNING_OWN,
                      namespace_options={"help": "Active learning of the model (irspec.active_learning)."})
        expose_closed(spec, IRSpectrumWorkChain, "spectrum", exclude=SPECTRUM_OWN,
                      namespace_options={"help": "NVE runs and their spectrum (irspec.ir_spectrum)."})
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.run_sampling,
            cls.inspect_sampling,
            cls.run_learning,
            cls.inspect_learning,
            cls.run_spectrum,
            cls.inspect_spectrum,
        )
        spec.expose_outputs(MdWorkChain, namespace="sampling")
        spec.expose_outputs(ActiveLearningWorkChain, namespace="learning", namespace_options={"required": False})
        spec.expose_outputs(IRSpectrumWorkChain, namespace="spectrum", namespace_options={"required": False})
        spec.exit_code(410, "ERROR_TOO_MANY_FAILED_REFERENCES",
                       message="active learning stopped: too many failed reference jobs ({message})")
        spec.exit_code(420, "ERROR_TOO_MANY_FAILED_RUNS", message="spectrum stopped: too many failed NVE or "
                                                                  "prediction jobs ({message})")
        spec.exit_code(430, "ERROR_SAMPLING_FAILED", message="the sampling MD <{pk}> failed: {message}")
        spec.exit_code(431, "ERROR_LEARNING_FAILED", message="active learning <{pk}> failed: {message}")
        spec.exit_code(432, "ERROR_SPECTRUM_FAILED", message="the spectrum <{pk}> failed: {message}")

    @classmethod
    def get_protocol_tree(cls, protocol=None, overrides=None):
        """The campaign's inputs as plain values: the campaign protocol's level with ``overrides`` (a dict)
        merged in, and each stage's own protocol of the same level under it. No profile needed."""
        level = protocol.split("@", 1)[0] if protocol else None
        tree = cls.get_protocol_inputs(protocol, overrides)
        check_override_keys(cls, tree)
        for stage, process in (("sampling", MdWorkChain), ("learning", ActiveLearningWorkChain),
                               ("spectrum", IRSpectrumWorkChain)):
            if not isinstance(tree.get(stage) or {}, dict):
                raise InputError(f"{stage}: expected a mapping, found {type(tree[stage]).__name__}")
            tree[stage] = process.get_protocol_inputs(level, tree.get(stage))
        return tree

    @classmethod
    def get_builder_from_protocol(cls, engine_code, predict_code, structure, protocol=None, overrides=None, *,
                                  engine=None, options=None, **engine_inputs):
        """A complete builder of the campaign.

        engine_code: the Code of the engine (tblite: ``aiida-irspec engine``; VASP); predict_code: the
        ``aiida-irspec`` Code of the prediction jobs. structure: StructureData. protocol: ``fast``, ``moderate``
        (default) or ``precise``, for the campaign and every stage. overrides: a dict mirroring the input ports
        (``{"temperature": 500, "learning": {"selection": {"budget": 20}}}``), or a campaign file (path or
        packaged name), whose launch keys then give the protocol, label, description and engine extras.
        engine: default from the engine code's plugin. options: scheduler options of every job. engine_inputs:
        the engine's extras (VASP: potential_family, potential_mapping, kpoints_distance, ml_ff).

        :raises InputError: naming every unknown key and invalid value by its dotted key.
        """
        from aiida_irspec.campaign.spec import campaign_problems, fill_normalisation, read_campaign_file

        source = None
        if overrides is not None and not isinstance(overrides, dict):
            source = read_campaign_file(overrides)
            overrides = source.overrides
            protocol = protocol or source.protocol
            engine = engine or source.engine
            engine_inputs = {**_engine_input_values(source.engine_inputs), **engine_inputs}
            options = {**source.codes.get("options", {}), **(options or {})}
        where = f"campaign file {source.path}" if source else "campaign inputs"
        try:
            tree = cls.get_protocol_tree(protocol, overrides)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
        problems = fill_normalisation(tree, structure.get_ase()) + campaign_problems(tree)
        if problems:
            raise InputError(f"{where} invalid:\n  " + "\n  ".join(problems))
        level = protocol.split("@", 1)[0] if protocol else None
        common = {"engine": engine, "options": options or None, **engine_inputs}
        builder = cls.get_builder()
        builder.structure = structure
        builder.temperature = orm.Float(tree["temperature"])
        builder.equilibration = orm.Int(tree.get("equilibration", 0))
        sampling = MdWorkChain.get_builder_from_protocol(engine_code, structure, protocol=level,
                                                         overrides=tree["sampling"], **common)
        builder.sampling = exposed_builder_inputs(sampling, exclude=SAMPLING_OWN)
        learning = ActiveLearningWorkChain.get_builder_from_protocol(engine_code, structure, protocol=level,
                                                                     overrides=tree["learning"], **common)
        builder.learning = exposed_builder_inputs(learning, exclude=LEARNING_OWN)
        spectrum_overrides = {**tree["spectrum"], "temperature": tree["temperature"]}
        dipoles = builder.sampling["engine"].value == "tblite"
        spectrum_overrides.setdefault("reference_dipoles", dipoles)  # the check of the model against its engine
        if spectrum_overrides["reference_dipoles"]:
            spectrum_overrides["predict"] = {"route": "polarization", **spectrum_overrides.get("predict", {})}
        spectrum = IRSpectrumWorkChain.get_builder_from_protocol(engine_code, predict_code, structure, protocol=level,
                                                                 overrides=spectrum_overrides, **common)
        builder.spectrum = exposed_builder_inputs(spectrum, exclude=SPECTRUM_OWN)
        if source is not None:
            builder.spec_file = orm.Dict(source.record())
            builder.metadata.label = source.name or source.path.stem
            builder.metadata.description = source.description
        return builder

    # ------------------------------------------------------------------ helpers
    def _label(self, stage):
        return f"{self.node.label or 'campaign'}: {stage}"

    def _attach(self, process_class, node, stage):
        """Attach the outputs of a finished stage under its namespace (also those of a failed stage)."""
        self.out_many(self.exposed_outputs(node, process_class, namespace=stage))

    # ------------------------------------------------------------------ stages
    def run_sampling(self):
        """The NVT run whose frames are the pool of candidate configurations."""
        inputs = self.exposed_inputs(MdWorkChain, namespace="sampling")
        inputs.update(structure=self.inputs.structure, temperature=self.inputs.temperature, ensemble=orm.Str("nvt"),
                      metadata={"call_link_label": "sampling", "label": self._label("sampling")})
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"stage 1/3 sampling: NVT {inputs['steps'].value} steps at {self.inputs.temperature.value} K, "
                    f"{node.process_label}<{node.pk}>")
        return ToContext(sampling=node)

    def inspect_sampling(self):
        node = self.ctx.sampling
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED.format(pk=node.pk, message=node.exit_message)
        self._attach(MdWorkChain, node, "sampling")
        return None

    def run_learning(self):
        """Active learning on the pool: the frames after the equilibration."""
        pool = self.ctx.sampling.outputs.trajectory
        stride = self.inputs.sampling.stride.value
        first = math.ceil(self.inputs.equilibration.value / stride)
        candidates = list(range(first, pool.numsteps))
        inputs = self.exposed_inputs(ActiveLearningWorkChain, namespace="learning")
        inputs.update(pool=pool, candidates=orm.List(candidates),
                      metadata={"call_link_label": "learning", "label": self._label("active learning")})
        node = self.submit(ActiveLearningWorkChain, **inputs)
        self.report(f"stage 2/3 active learning: pool of {len(candidates)} frames, {node.process_label}<{node.pk}>")
        return ToContext(learning=node)

    def inspect_learning(self):
        node = self.ctx.learning
        self._attach(ActiveLearningWorkChain, node, "learning")
        if node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.status:
            return self.exit_codes.ERROR_TOO_MANY_FAILED_REFERENCES.format(message=node.exit_message)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LEARNING_FAILED.format(pk=node.pk, message=node.exit_message)
        return None

    def run_spectrum(self):
        """NVE runs with the learned model, from the end of the sampling run."""
        sampling = self.ctx.sampling.outputs
        inputs = self.exposed_inputs(IRSpectrumWorkChain, namespace="spectrum")
        inputs.update(structure=sampling.final_structure, temperature=self.inputs.temperature,
                      model=self.ctx.learning.outputs.model,
                      metadata={"call_link_label": "spectrum", "label": self._label("spectrum")})
        if "final_velocities" in sampling:
            inputs["initial_velocities"] = sampling.final_velocities
        node = self.submit(IRSpectrumWorkChain, **inputs)
        runs = {"number": 8, **inputs["runs"].get_dict()}
        self.report(f"stage 3/3 spectrum: {runs['number']} NVE runs, {node.process_label}<{node.pk}>")
        return ToContext(spectrum=node)

    def inspect_spectrum(self):
        node = self.ctx.spectrum
        self._attach(IRSpectrumWorkChain, node, "spectrum")
        if node.exit_status == IRSpectrumWorkChain.exit_codes.ERROR_TOO_MANY_FAILED_RUNS.status:
            return self.exit_codes.ERROR_TOO_MANY_FAILED_RUNS.format(message=node.exit_message)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SPECTRUM_FAILED.format(pk=node.pk, message=node.exit_message)
        self.report("campaign finished")
        return None


def _engine_input_values(values):
    """The engine extras of a campaign file as builder keyword arguments (an ``ml_ff`` path as a file node)."""
    values = dict(values)
    if isinstance(values.get("ml_ff"), str):
        values["ml_ff"] = orm.SinglefileData(values["ml_ff"])
    return values


def validate_campaign_file(name_or_path):
    """Check a campaign file (path or packaged name) without a profile: its launch keys, its structure, every
    setting of the protocol it overrides and, when it names its engine, that the engine takes the structure.

    :returns: (CampaignFile, ase.Atoms, the campaign's inputs as plain values).
    :raises InputError: listing every problem by its dotted key.
    """
    from aiida_irspec.campaign.spec import campaign_problems, fill_normalisation, read_campaign_file
    from aiida_irspec.workflows.engines import ENGINES

    source = read_campaign_file(name_or_path)
    try:
        atoms = source.load_structure()
        tree = CampaignWorkChain.get_protocol_tree(source.protocol, source.overrides)
    except InputError as error:
        raise InputError(f"{source.path}: {error}") from None
    problems = fill_normalisation(tree, atoms) + campaign_problems(tree)
    if source.engine is not None and source.engine not in ENGINES:
        problems.append(f"engine: {source.engine!r} is unknown; known: {', '.join(ENGINES)}")
    elif source.engine is not None and ENGINES[source.engine].check_structure(atoms):
        problems.append(f"structure: {ENGINES[source.engine].check_structure(atoms)}")
    if problems:
        raise InputError(f"{source.path} is invalid:\n  " + "\n  ".join(problems))
    return source, atoms, tree


def builder_from_file(name_or_path, **kwargs):
    """The builder of a campaign file (path or packaged name): its codes loaded by label, its structure read
    (supercell applied), then :meth:`CampaignWorkChain.get_builder_from_protocol` with the file as overrides.
    ``kwargs`` go to that method (e.g. ``protocol``)."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from aiida_irspec.campaign.spec import read_campaign_file
    from aiida_irspec.data.frames import structure_from_atoms

    source = read_campaign_file(name_or_path)
    codes = {}
    for key in ("engine", "predict"):
        label = source.code_label(key)
        try:
            codes[key] = orm.load_code(label)
        except (NotExistent, MultipleObjectsError) as error:
            raise InputError(f"codes.{key}: no unique AiiDA code {label!r} ({error}); see `verdi code list` "
                             f"(`aiida-irspec cluster setup` makes the codes of a computer)") from None
    structure = structure_from_atoms(source.load_structure())
    return CampaignWorkChain.get_builder_from_protocol(codes["engine"], codes["predict"], structure,
                                                      overrides=source.path, **kwargs)
