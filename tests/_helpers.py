"""Small builders shared by several test modules."""

from __future__ import annotations

from sklearn_certify.nets import MultiLabelNet


def tiny_net(**kwargs) -> MultiLabelNet:
    """A small unfitted ``MultiLabelNet`` (one hidden layer of 16, two epochs) for fast
    tests; ``kwargs`` override its parameters."""
    return MultiLabelNet(
        **{**dict(module__hidden=(16,), max_epochs=2, batch_size=64, lr=3e-3), **kwargs}
    )


def repo_module(relative_path: str):
    """A Python file of this repository outside the package (``bench/``, ``examples/``,
    ``docs/sphinxext/``), imported as a module named after the file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docs_extension(name: str):
    """The docs' Sphinx extension ``docs/sphinxext/<name>.py``, imported as a module
    (without Sphinx: its checks run as plain functions)."""
    return repo_module(f"docs/sphinxext/{name}.py")
