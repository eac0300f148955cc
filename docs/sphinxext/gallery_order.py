"""Order of the examples in the gallery: the quickstart first, then by topic."""

from pathlib import Path

ORDER = [
    "quickstart.py",
    "plot_certified_curves.py",
    "poisoning.py",
    "poisoning_dask.py",
    "certify_at_scale.py",
    "grid_search.py",
    "reproduce_papers.py",
]


class ExampleOrder:
    """sphinx-gallery sort key: listed examples in ``ORDER``, any other one after them."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str):
        name = Path(filename).name
        return (ORDER.index(name), name) if name in ORDER else (len(ORDER), name)
