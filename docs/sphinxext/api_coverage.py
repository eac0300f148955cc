"""Fail the docs build when a public name has no page in the API reference.

The public names are the ``__all__`` of ``sklearn_certify`` and of every public
submodule (no path component starting with ``_``). A name counts as documented when
``api.rst`` lists it in an ``autosummary`` block, under its own module or under any
module that exports the same object (``sklearn_certify.CertificationResult`` is
``sklearn_certify.results.CertificationResult``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

PACKAGE = "sklearn_certify"
#: Names in ``__all__`` that are not API pages.
NOT_PAGES = {"__version__"}


def public_modules(package: str = PACKAGE) -> list[str]:
    """The package and its submodules whose dotted path has no ``_``-prefixed part."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def public_names(package: str = PACKAGE) -> dict[str, object]:
    """``{"module.name": object}`` for every name in a public module's ``__all__``."""
    found = {}
    for module_name in public_modules(package):
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name not in NOT_PAGES:
                found[f"{module_name}.{name}"] = getattr(module, name)
    return found


def documented_names(api_rst: str | Path) -> list[str]:
    """Dotted names listed in the ``autosummary`` blocks of ``api_rst``."""
    module, listed, in_block = None, [], False
    for line in Path(api_rst).read_text().splitlines():
        current = re.match(r"\.\. currentmodule:: (\S+)", line.strip())
        if current:
            module = current.group(1)
        if line.strip().startswith(".. autosummary::"):
            in_block = True
            continue
        if in_block:
            entry = line.strip()
            if not entry or entry.startswith(":"):
                continue
            if not line.startswith((" ", "\t")):
                in_block = False
                continue
            listed.append(entry if module is None else f"{module}.{entry}")
    return listed


def _resolve(dotted: str):
    module_name, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):  # autosummary reports the bad entry itself
        return None


def missing_pages(api_rst: str | Path, package: str = PACKAGE) -> list[str]:
    """Public names whose object no ``autosummary`` entry of ``api_rst`` documents."""
    documented = {id(_resolve(name)) for name in documented_names(api_rst)} - {id(None)}
    return sorted(name for name, obj in public_names(package).items()
                  if id(obj) not in documented)


def _check(app) -> None:
    from sphinx.errors import ExtensionError

    missing = missing_pages(Path(app.srcdir) / "api.rst")
    if missing:
        raise ExtensionError(
            "public names without a page in docs/api.rst (add them to an autosummary "
            "block): " + ", ".join(missing))


def setup(app):
    app.connect("builder-inited", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
