"""Print pip constraints that pin every runtime dependency of pyproject.toml at its lower bound.

Each dependency must have one (``>=X`` or ``~=X``); one without is an error, so that a new dependency
cannot skip the lowest-versions CI step. Usage: ``python .ci/lowest_constraints.py > constraints.txt``.
"""

import pathlib
import re
import sys
import tomllib

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def lower_bounds(dependencies):
    """{name: version} of the ``>=`` or ``~=`` bound of each requirement string (markers are kept out)."""
    bounds = {}
    for requirement in dependencies:
        spec = requirement.split(";")[0]
        name = re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1)
        bound = re.search(r"(?:>=|~=)\s*([0-9][^,\s]*)", spec)
        if bound is None:
            sys.exit(f"Error: dependency {requirement!r} in {PYPROJECT.name} has no lower bound (>= or ~=)")
        bounds[name] = bound.group(1)
    return bounds


if __name__ == "__main__":
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for name, version in lower_bounds(project["dependencies"]).items():
        print(f"{name}=={version}")
