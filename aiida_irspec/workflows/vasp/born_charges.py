"""Born effective charges and the electronic dielectric tensor from one VASP linear-response run.

:class:`VaspBornChargesWorkChain` (entry point ``irspec.vasp.born_charges``) is aiida-vasp's ``vasp.v2.vasp``
WorkChain (:mod:`.base`) running one ``LEPSILON = .TRUE.`` calculation (tags from
``protocols/vasp/born_charges.yaml``), restarting it with aiida-vasp's handlers, and returning ``born_charges``
(:class:`~aiida_irspec.data.born_charges.BornChargesData`).

Electronic convergence: aiida-vasp's handler (ALGO Fast -> Normal, NELM 150, AMIX 0.2 / 0.1 / 0.05, ALGO All)
is replaced here by one for linear response (:func:`aiida_irspec.engines.vasp.next_electronic_fix`): ALGO
Fast/VeryFast -> Normal, then NELM doubled (at least 120, at most 400; the linear-response cycles of LEPSILON
run under the same NELM), then ALGO = All, keeping the mixing of the ground state untouched.

Where the numbers come from (the rule): aiida-vasp's parser reads Born charges and the dielectric
tensor from vasprun.xml only (outputs ``born_charges`` and ``dielectrics['epsilon']``); when the run
has them there they are used as they are. Otherwise (no vasprun.xml, or one without them, as for
runs whose vasprun.xml was lost) the retrieved OUTCAR is read with
:func:`aiida_irspec.io.vasp.read_outcar_born_charges`. Where both exist they agree to the OUTCAR's
printed precision (vasprun.xml carries more digits).
"""

import hashlib

import numpy as np
from aiida.engine import ProcessHandlerReport, process_handler
from aiida_vasp.calcs.vasp import VaspCalculation

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.engines.vasp import dfpt_incar, next_electronic_fix
from aiida_irspec.workflows.vasp.base import IrspecVaspWorkChain


def parser_settings():
    """aiida-vasp parser settings of a DFPT run: OUTCAR is the one critical file (vasprun.xml is read when
    present), and the Born charges / dielectric arrays are wanted."""
    return {"critical_objects": ["OUTCAR"], "check_completeness": False,
            "include_node": ["born_charges", "dielectrics"]}


def born_charges_arrays(retrieved, born_charges=None, dielectrics=None):
    """Born charges (N, 3, 3), dielectric (3, 3) | None and a source dict, by the module's rule.

    :param retrieved: the run's retrieved FolderData (holds OUTCAR).
    :param born_charges: aiida-vasp's ``born_charges`` ArrayData (from vasprun.xml) or None.
    :param dielectrics: aiida-vasp's ``dielectrics`` ArrayData or None.
    :returns: ``(born, dielectric, source)`` or None when neither file holds Born charges.
    """
    import aiida_vasp

    from aiida_irspec.io.vasp import read_outcar_born_charges

    if born_charges is not None:
        born = born_charges.get_array("born_charges")
        dielectric = None
        if dielectrics is not None and "epsilon" in dielectrics.get_arraynames():
            dielectric = dielectrics.get_array("epsilon")
        with retrieved.base.repository.open("vasprun.xml", "rb") as handle:
            sha256 = hashlib.sha256(handle.read()).hexdigest()
        return born, dielectric, {"engine": "vasp", "format": "vasprun", "file": "vasprun.xml", "sha256": sha256,
                                  "parser": f"aiida-vasp {aiida_vasp.__version__}"}
    if "OUTCAR" not in retrieved.base.repository.list_object_names():
        return None
    with retrieved.base.repository.as_path() as folder:
        try:
            record = read_outcar_born_charges(folder / "OUTCAR")
        except ValueError:
            return None
    source = {key: value for key, value in record.source.items() if key != "path"}
    source.update({"engine": "vasp", "file": "OUTCAR", "parser": "aiida_irspec.io.vasp"})
    return record.born_charges, record.dielectric, source


@versioned_calcfunction
def born_charges_from_vasp(structure, retrieved, born_charges=None, dielectrics=None):
    """BornChargesData of ``structure`` from a finished VASP linear-response run (rule: module doc)."""
    born, dielectric, source = born_charges_arrays(retrieved, born_charges, dielectrics)
    symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
    return BornChargesData(born, symbols=symbols, dielectric=dielectric, source=source)


class VaspBornChargesWorkChain(IrspecVaspWorkChain):
    """Born effective charges (and epsilon_infinity) of a structure from a VASP LEPSILON run."""

    _protocol_tag = "vasp/born_charges"
    _own_outputs = ("born_charges",)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("born_charges", valid_type=BornChargesData,
                    help="Born effective charges Z[i, a, b] = dP_a / dx_{i,b} in |e|, with the dielectric tensor.")
        spec.exit_code(340, "ERROR_NO_BORN_CHARGES",
                       message="The run finished but neither vasprun.xml nor OUTCAR holds Born effective charges.")
        spec.exit_code(341, "ERROR_WRONG_NUMBER_OF_IONS",
                       message="The Born charges are for {found} ions but the structure has {expected}.")
        spec.exit_code(342, "ERROR_ELECTRONIC_NOT_CONVERGED",
                       message="The electronic self-consistency did not converge after every fix was tried.")

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, options=None, *,
                                  potential_family=None, potential_mapping=None, kpoints_distance=None,
                                  kpoints=None, **_):
        """A builder filled from a protocol level of ``protocols/vasp/born_charges.yaml``.

        :param code: the VASP Code (``InstalledCode`` of plugin ``vasp.vasp``).
        :param structure: StructureData.
        :param protocol: ``fast`` | ``moderate`` | ``precise`` (None: the file's default), or ``level@NAME``.
        :param overrides: dict (or YAML file) with any of ``parameters`` (INCAR tags; ``None`` removes one),
            ``kpoints_distance``, ``settings`` (merged into aiida-vasp's settings), ``max_iterations``,
            ``clean_workdir``, ``handler_overrides`` (aiida-vasp's handlers by name: true / false).
        :param options: CalcJob options (``resources``, ``max_wallclock_seconds``, ``account``, ...).
        :param potential_family: label of an uploaded POTCAR family.
        :param potential_mapping: element (or kind) -> POTCAR name, e.g. ``{"Zr": "Zr_sv", "O": "O_s"}``; other
            elements: VASP's recommended POTCAR.
        :param kpoints_distance: k-point spacing in 1/Angstrom (with 2 pi); default from the protocol.
        :param kpoints: a KpointsData to use instead of a mesh from ``kpoints_distance``.
        """
        inputs, incar = cls.protocol_and_overrides(protocol, overrides)
        return cls.builder_for(code, structure, dfpt_incar(inputs, incar), {"parser_settings": parser_settings()},
                               inputs, options, potential_family=potential_family,
                               potential_mapping=potential_mapping, kpoints_distance=kpoints_distance, kpoints=kpoints)

    @process_handler(priority=800, exit_codes=[VaspCalculation.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED])
    def handler_electronic_conv(self, node):
        """Electronic non-convergence of a linear-response run: the next fix of :func:`next_electronic_fix`
        (replaces aiida-vasp's handler of the same name), or stop with 342."""
        fix = next_electronic_fix(node.inputs.parameters.get_dict())
        if fix is None:
            self.report(f"{node.process_label}<{node.pk}> not converged electronically and no fix is left")
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED)
        tags, description = fix
        self.ctx.inputs.parameters = {key.lower(): value for key, value in tags.items()}
        self.report(f"{node.process_label}<{node.pk}> not converged electronically: restarting with {description}")
        return ProcessHandlerReport(do_break=True)

    def results(self):
        """aiida-vasp's outputs of the last run, and the BornChargesData checked for presence and number of ions."""
        super().results()
        node = self.last_calculation()
        extra = {name: node.outputs[name] for name in ("born_charges", "dielectrics") if name in node.outputs}
        found = born_charges_arrays(node.outputs.retrieved, **extra)
        if found is None:
            self.report(f"{node.process_label}<{node.pk}> holds no Born effective charges")
            return self.exit_codes.ERROR_NO_BORN_CHARGES
        expected = len(self.inputs.structure.sites)
        if np.shape(found[0])[0] != expected:
            return self.exit_codes.ERROR_WRONG_NUMBER_OF_IONS.format(found=np.shape(found[0])[0], expected=expected)
        self.out("born_charges", born_charges_from_vasp(self.inputs.structure, node.outputs.retrieved, **extra))
        return None
