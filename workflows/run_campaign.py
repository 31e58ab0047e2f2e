"""Run or submit a campaign spec with ``verdi run`` (the profile is loaded by verdi):

    verdi run workflows/run_campaign.py workflows/water_dimer_tblite.yaml            # in the foreground
    verdi run workflows/run_campaign.py workflows/water_dimer_tblite.yaml --submit   # to the daemon

The same as ``aiida-irspec campaign run|submit SPEC``.
"""

import sys

from aiida.engine import run_get_node, submit

from aiida_irspec.campaign.spec import load_spec
from aiida_irspec.workflows.campaign import builder_from_spec

arguments = sys.argv[1:]
if not arguments or arguments[0].startswith("-"):
    sys.exit(__doc__)
builder = builder_from_spec(load_spec(arguments[0]))
if "--submit" in arguments:
    node = submit(builder)
    print(f"Submitted {node.process_label}<{node.pk}> ({node.label})")
else:
    _, node = run_get_node(builder)
    print(f"{node.process_label}<{node.pk}> ({node.label}) finished with exit status {node.exit_status}")
