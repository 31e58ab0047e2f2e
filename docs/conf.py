"""Sphinx configuration of the aiida-irspec documentation (MyST markdown)."""

import aiida_irspec

project = "aiida-irspec"
author = "aiida-irspec developers"
release = version = aiida_irspec.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_click",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "aiida-irspec"
autodoc_mock_imports = []
nitpicky = False


def _escape_rst(app, ctx, lines):
    """Click help texts are plain text: escape the characters reStructuredText would read as markup
    ("|e|" for the elementary charge, a lone "*")."""
    for k, line in enumerate(lines):
        lines[k] = line.replace("|", "\\|").replace("*", "\\*")


def setup(app):
    for part in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{part}", _escape_rst)
