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
    return sorted(name for name, obj in public_names(package).items() if id(obj) not in documented)


def _check(app) -> None:
    from sphinx.errors import ExtensionError

    missing = missing_pages(Path(app.srcdir) / "api.rst")
    if missing:
        raise ExtensionError(
            "public names without a page in docs/api.rst (add them to an autosummary "
            "block): " + ", ".join(missing)
        )


def _data_docstring(app, what, name, obj, options, lines) -> None:
    """Document re-exported constants by their ``#:`` comment where they are defined.

    autodoc finds ``#:`` comments only in the module it documents; for a constant
    imported from a private module it would show the docstring of its type instead.
    """
    text = "\n".join(lines).strip()
    type_doc = (type(obj).__doc__ or "").strip()
    if what != "data" or (text and not type_doc.startswith(text.splitlines()[0].strip())):
        return
    from sphinx.pycode import ModuleAnalyzer

    attr = name.rpartition(".")[2]
    for module_name in sorted(_all_modules()):
        try:
            comment = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", attr))
        except Exception:  # noqa: BLE001 - a module without source has no comments
            continue
        if comment:
            lines[:] = [line.rstrip("\n") for line in comment]
            return
    lines[:] = []


def _all_modules(package: str = PACKAGE) -> list[str]:
    root = importlib.import_module(package)
    return [package] + [
        info.name for info in pkgutil.walk_packages(root.__path__, prefix=package + ".")
    ]


def setup(app):
    app.connect("builder-inited", _check)
    app.connect("autodoc-process-docstring", _data_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
