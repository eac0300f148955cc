"""Sphinx configuration of the sklearn-certify documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))
sys.path.insert(0, str(DOCS.parent))  # this checkout's sklearn_certify

import sklearn_certify  # noqa: E402

project = "sklearn-certify"
author = "the sklearn-certify developers"
copyright = "the sklearn-certify developers, BSD-3-Clause"
release = sklearn_certify.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # serves MathJax from _static: math renders offline
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "api_coverage",
    "parameter_table",  # docs/model_selection.md's table, from _params
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples", "sphinxext", "Thumbs.db", ".DS_Store"]
default_role = "literal"

# --------------------------------------------------------------------------- user guide
#: Every Markdown page in docs/ is a user-guide page; these come first, in this order,
#: and any other docs/*.md follows alphabetically (see ``_user_guide_toctree``).
NOT_USER_GUIDE = {"getting_started", "development"}
USER_GUIDE_ORDER = [
    "guarantees",
    "choosing_parameters",
    "training",
    "input_space",
    "pretrained_models",
    "model_selection",
    "performance",
    "scale",
    "sequential",
    "persistence",
    "reproducing_papers",
    "multiguard",
    "poisoningguard",
]


def user_guide_pages() -> list[str]:
    found = {path.stem for path in DOCS.glob("*.md")} - NOT_USER_GUIDE
    ordered = [name for name in USER_GUIDE_ORDER if name in found]
    return ordered + sorted(found - set(ordered))


def _user_guide_toctree(app, docname, source):
    """Fill the user guide's toctree with every docs/*.md page."""
    if docname == "user_guide":
        entries = "\n".join(f"   {page}" for page in user_guide_pages())
        source[0] = source[0].replace("   USER_GUIDE_PAGES", entries)


def _always_reread_user_guide(app, env, added, changed, removed):
    return ["user_guide"] if added or removed else []


# -------------------------------------------------------------------- autodoc/numpydoc
autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types
autoclass_content = "class"
autodoc_member_order = "bysource"
toc_object_entries_show_parents = "hide"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

intersphinx_mapping: dict[str, tuple[str, None]] = {}  # no network in CI

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings: list[str] = []

# ----------------------------------------------------------------------- gallery
# Only examples named plot_*.py run during the build; keep each under about 30 s.
# The other examples (minutes on a CPU) are shown with their code, and with the
# figures of a full run shipped in docs/images/.
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"/(_|output)",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "download_all_examples": False,
    "doc_module": ("sklearn_certify",),
    "backreferences_dir": "generated",
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
}
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# ----------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-certify {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "getting_started": [], "changelog": [], "development": []}


def setup(app):
    app.connect("source-read", _user_guide_toctree)
    app.connect("env-get-outdated", _always_reread_user_guide)
