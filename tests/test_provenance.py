"""Provenance recipes: from a spectrum back to every Born-charge job, and from one job forward to models and spectra."""

import shutil

import numpy as np

from campaign_helpers import SMALL_DESCRIPTOR, dimer_references, trajectory_data, water_dimer_md


def test_recipes_on_a_small_chain(aiida_localhost, aiida_code_installed):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.aggregate import aggregate_spectra
    from aiida_irspec.calculations.fit import fit_polarization_model
    from aiida_irspec.calculations.predict import PredictPdotCalculation
    from aiida_irspec.data.frames import structure_from_atoms
    from aiida_irspec.data.provenance import born_charge_jobs_of, models_using, spectra_using
    from aiida_irspec.workflows.born_charges import BornChargesWorkChain

    executable = shutil.which("aiida-irspec")
    tblite = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                  default_calc_job_plugin="irspec.tblite.born_charges", label="tblite")
    irspec = aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                  default_calc_job_plugin="irspec.predict_pdot", label="irspec")
    frames, _ = dimer_references()
    jobs = []
    for atoms in frames[:3]:
        _, job = run_get_node(BornChargesWorkChain, structure=structure_from_atoms(atoms), engine=orm.Str("tblite"),
                              code=tblite, protocol=orm.Str("fast"))
        assert job.is_finished_ok, job.exit_message
        jobs.append(job)
    settings = orm.Dict({"descriptor": SMALL_DESCRIPTOR, "baseline": "zero"})

    def fit(used):
        return fit_polarization_model(
            settings=settings,
            structures={f"s{k}": job.inputs.structure for k, job in enumerate(used)},
            born_charges={f"s{k}": job.outputs.born_charges for k, job in enumerate(used)})

    model_a, model_b = fit(jobs[:2]), fit(jobs[1:])  # job 0 only in model a, job 2 only in model b
    pdot = run_get_node(PredictPdotCalculation, code=irspec, model=model_a,
                        trajectory=trajectory_data(water_dimer_md()))[0]["pdot"]
    spectrum = aggregate_spectra(settings=orm.Dict({"temperature": 300.0, "molecules": 2}), run_0=pdot)

    assert [job.pk for job in born_charge_jobs_of(spectrum)] == [job.pk for job in jobs[:2]]
    assert [job.pk for job in born_charge_jobs_of(model_b)] == [job.pk for job in jobs[1:]]
    assert [m.pk for m in models_using(jobs[0])] == [model_a.pk]
    assert [m.pk for m in models_using(jobs[1])] == sorted([model_a.pk, model_b.pk])
    assert [s.pk for s in spectra_using(jobs[0])] == [spectrum.pk]
    assert spectra_using(jobs[2]) == []
    # from the CalcJob under the WorkChains (irspec.born_charges -> irspec.tblite.born_charges) as well
    calcjob = jobs[0].called[0].called[0]
    assert calcjob.process_type == "aiida.calculations:irspec.tblite.born_charges"
    assert [m.pk for m in models_using(calcjob)] == [model_a.pk]
    assert np.isfinite(spectrum.mean).all()
