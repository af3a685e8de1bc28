"""Sphinx configuration: API reference from the docstrings, the Markdown pages, the examples gallery.

Build (from the repository root; warnings are errors, as in ``.ci/run``)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing here needs the internet or runs an example: the gallery pages are written from
``examples/*.py`` and show the committed figures listed in ``docs/figures/figures.toml``
(``docs/make_figures.py`` remakes them).
"""

from __future__ import annotations

import inspect
import pathlib
import sys

from sphinx.application import Sphinx

import diffsim

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "diffsim"
author = "the diffsim authors"
copyright = "the diffsim authors, MIT licence"
release = diffsim.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "gallery",  # docs/_ext/gallery.py: one page per example, with its committed figures
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings are Google style (ruff's pydocstyle convention "google").
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True
# Keep the alias name instead of expanding it into numpy's private union of array types.
autodoc_type_aliases = {"ArrayLike": "numpy.typing.ArrayLike"}

# Markdown pages (README, architecture, benchmarks): anchors for their headings, so that
# links such as [x](#section) resolve.
myst_heading_anchors = 3

# Quotes and ellipses only: "--out" stays two hyphens, not an en dash.
smartquotes_action = "qe"

# No intersphinx: the build must work offline. Unresolved references to third-party
# objects (numpy, taichi, ...) stay plain text (nitpicky is off).
nitpicky = False

html_theme = "furo"
html_title = f"diffsim {release}"

gallery_examples = "../examples"  # relative to this folder
gallery_figures = "figures/figures.toml"
gallery_out = "gallery"  # generated, ignored by git


def skip_field_members(app: Sphinx, what: str, name: str, obj: object, skip: bool,
                       options: object) -> bool | None:
    """Leave out class members that the class's ``Attributes:`` section documents already.

    Fields of a NamedTuple (their values are tuple getters with an "Alias for field number"
    docstring) and class attributes whose value is a builtin function (a dataclass field
    such as ``echo = print``) would otherwise be described twice: once by napoleon from
    ``Attributes:``, once by autodoc as a member.
    """
    if what in ("class", "exception") and (type(obj).__name__ == "_tuplegetter"
                                           or inspect.isbuiltin(obj)):
        return True
    return None


def setup(app: Sphinx) -> None:
    """Connect the member filter."""
    app.connect("autodoc-skip-member", skip_field_members)
