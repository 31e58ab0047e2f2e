"""A whole IR campaign from Python, the way aiida-quantumespresso and aiida-vasp workflows are launched:

    verdi run workflows/submit_campaign.py              # to the daemon (`verdi daemon start` first)
    verdi run workflows/submit_campaign.py --foreground # in this process

It builds the water-dimer campaign on the embedded engine (codes `tblite@localhost` and `irspec@localhost`,
which `aiida-irspec demo` creates) from the `fast` protocol with a few overrides, prints the inputs it will
run with, and launches it. The same campaign from a campaign file: `aiida-irspec campaign submit FILE`.
"""

import sys

import ase.io
from aiida import orm
from aiida.engine import run_get_node, submit

from aiida_irspec.campaign.spec import SPEC_DIR
from aiida_irspec.data.frames import structure_from_atoms
from aiida_irspec.workflows.campaign import CampaignWorkChain

structure = structure_from_atoms(ase.io.read(SPEC_DIR / "structures" / "water_dimer.xyz"))
builder = CampaignWorkChain.get_builder_from_protocol(
    orm.load_code("tblite@localhost"), orm.load_code("irspec@localhost"), structure, protocol="fast",
    overrides={
        "temperature": 300,
        "learning": {"selection": {"budget": 20}},
        "spectrum": {"analysis": {"width_cm1": 20, "bands": {"bend": [1450, 1800], "stretch": [3200, 3950]}}},
    })
builder.metadata.label = "water-dimer-from-python"
print(builder)  # every input, as it will be stored: change any of it before launching

if "--foreground" in sys.argv:
    _, node = run_get_node(builder)
    print(f"{node.process_label}<{node.pk}> finished with exit status {node.exit_status}")
else:
    node = submit(builder)
    print(f"Submitted {node.process_label}<{node.pk}>: `aiida-irspec campaign status {node.pk}`")
