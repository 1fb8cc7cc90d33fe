"""Sphinx configuration of the HC-DC documentation (``make docs``; offline, warnings are errors)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))


def _load_lazy_commands() -> None:
    """``hcdc preprocess`` and ``postprocess`` are imported on first use (``hcdc.cli._LazyGroup``);
    sphinx-click reads ``main.commands``, so they are loaded here for the CLI reference to show them."""
    import click

    from hcdc.cli import main

    with click.Context(main) as ctx:
        for name in main.list_commands(ctx):
            main.get_command(ctx, name)


_load_lazy_commands()

project = "HC-DC"
author = "the HC-DC developers"
copyright = "2026, the HC-DC developers (MIT licence)"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
    "sphinx_click",
    "matplotlib.sphinxext.plot_directive",
    "hcdc_docs",
]
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_member_order = "bysource"
# no network at build time: no intersphinx, no remote images
html_theme = "pydata_sphinx_theme"
html_title = "HC-DC"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
nitpicky = False
