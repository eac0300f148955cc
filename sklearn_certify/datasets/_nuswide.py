"""NUS-WIDE (81 concepts) in the layout of the ASL release (Ridnik et al., 2021)."""

from __future__ import annotations

import ast
import csv
import os

from sklearn.utils import Bunch

from ._loader import Layout, fill_doc, indicator_matrix, make_bunch

# The 81 concepts of NUS-WIDE's Concepts81.txt. They are in alphabetical order, which is
# also the order the ASL loaders give (sorted set of the names in the CSV file).
NUSWIDE_CONCEPTS = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings",
    "cars", "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing",
    "dog", "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost",
    "garden", "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map",
    "military", "moon", "mountain", "nighttime", "ocean", "person", "plane", "plants",
    "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running",
    "sand", "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset",
    "surf", "swimmers", "tattoo", "temple", "tiger", "tower", "town", "toy", "train",
    "tree", "valley", "vehicle", "water", "waterfall", "wedding", "whales", "window",
    "zebra",
)  # fmt: skip
NUSWIDE_SPLITS = ("train", "test")
# ASL's CSV calls its test split "val"; both spellings are read as the test split.
_SPLIT_VALUES = {"train": {"train"}, "test": {"val", "test"}}
CSV_NAME = "nus_wid_data.csv"

_LAYOUT = Layout(
    "NUS-WIDE (ASL release)",
    NUSWIDE_SPLITS,
    f"""\
<root>/
+-- {CSV_NAME}      a header row, then one row per image with 3 columns:
|                         image path relative to <root>, label, split, e.g.
|                         images/0001_2124494179.jpg,"['clouds', 'sky']",train
|                         (label: a list of the 81 concept names; split: train or val)
+-- images/               the image files the first column names""",
)


def _parse_labels(text: str, where: str) -> list[str]:
    text = text.strip()
    if text in ("", "[]"):
        return []
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        # The same fallback as ASL's own reader: split on commas, strip brackets/quotes.
        names = [part.strip("[]'\"\n ") for part in text.split(",")]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: cannot read the label list {text!r}.")
    names = [n.strip() for n in names if n.strip()]
    unknown = sorted(set(names) - set(NUSWIDE_CONCEPTS))
    if unknown:
        raise ValueError(f"{where}: unknown NUS-WIDE concept(s) {unknown}.")
    return names


def _columns(header: list[str]) -> tuple[int, int, int]:
    """Positions of the path, label and split columns (by name, else 0, 1, 2)."""
    lowered = [h.strip().lower() for h in header]

    def find(names, default):
        return next((lowered.index(n) for n in names if n in lowered), default)

    return (
        find(("filepath", "filename", "file", "path", "image"), 0),
        find(("label", "labels"), 1),
        find(("split_name", "split"), 2),
    )


@fill_doc
def load_nuswide(
    root: str | os.PathLike,
    split: str = "train",
    *,
    return_images: bool = False,
    image_size: int | tuple[int, int] = 224,
) -> Bunch:
    """Load NUS-WIDE as a multi-label image data set (81 concepts), ASL version.

    NUS-WIDE is distributed as Flickr URLs, many of which no longer resolve; the
    papers use the copy released with ASL (Ridnik et al., ICCV 2021): about 154,000
    training and 66,000 test images, with one CSV file ``nus_wid_data.csv`` that lists
    every image, its concepts and its split. Nothing is downloaded: ``root`` must hold
    that release. Rows are returned in file order; a row with an empty label list gets
    an all-zero row of ``Y``.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``nus_wid_data.csv`` and the images. Expected layout::

            <root>/
            +-- nus_wid_data.csv   header row, then: path,label,split per image, e.g.
            |                      images/0001_2124494179.jpg,"['clouds', 'sky']",train
            +-- images/            the image files named in the first column

        Image paths in the CSV are taken relative to ``root``. Columns are found by
        name (``filepath``, ``label``, ``split_name``) or else by position.
    split : {"train", "test"}, default="train"
        Which rows to read. The CSV file marks the test rows ``val``; ``"val"`` is
        accepted as another name for ``"test"``.
    %(return_images)s
    %(image_size)s

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        paths : list of str
            The image file of each row.
        Y : ndarray of shape (n_images, 81), dtype int
            Indicator matrix: ``Y[i, j] == 1`` when image ``i`` has concept ``j``.
        class_names : list of str
            The 81 concepts in alphabetical order (the order of ``Concepts81.txt`` and
            of the ASL loaders).
        image_ids : list of str
            The image path exactly as written in the CSV file.
        %(images)s

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``nus_wid_data.csv`` is missing (or, with ``return_images=True``,
        an image file); the message shows the expected layout.
    ValueError
        If ``split`` is not ``"train"`` or ``"test"``, or a row names an unknown
        concept.

    Examples
    --------
    >>> from sklearn_certify.datasets import load_nuswide
    >>> test = load_nuswide("~/data/nus_wide", "test")  # doctest: +SKIP
    >>> test.Y.shape[1], test.class_names[:3]  # doctest: +SKIP
    (81, ['airport', 'animal', 'beach'])
    """
    if split == "val":
        split = "test"
    _LAYOUT.check_arguments(split, image_size, note=" ('val' is read as 'test')")
    root = _LAYOUT.root(root)
    csv_file = _LAYOUT.require_file(root / CSV_NAME)

    wanted = _SPLIT_VALUES[split]
    column = {name: j for j, name in enumerate(NUSWIDE_CONCEPTS)}
    image_ids, rows = [], []
    with open(csv_file, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{os.fspath(csv_file)!r} is empty.")
        path_col, label_col, split_col = _columns(header)
        n_cols = max(path_col, label_col, split_col) + 1
        for line_no, record in enumerate(reader, start=2):
            if not record:
                continue
            if len(record) < n_cols:
                raise ValueError(
                    f"{os.fspath(csv_file)!r}, line {line_no}: expected at least {n_cols} "
                    f"columns (path, label, split), got {record!r}."
                )
            if record[split_col].strip() not in wanted:
                continue
            where = f"{os.fspath(csv_file)!r}, line {line_no}"
            names = _parse_labels(record[label_col], where)
            image_ids.append(record[path_col].strip())
            rows.append([column[n] for n in names])

    Y = indicator_matrix(rows, len(NUSWIDE_CONCEPTS))
    paths = [os.fspath(root / image_id) for image_id in image_ids]
    if return_images:
        for path in paths:
            if not os.path.isfile(path):
                raise _LAYOUT.error(f"image file {path!r} listed in {CSV_NAME} does not exist.")
    return make_bunch(
        paths,
        Y,
        list(NUSWIDE_CONCEPTS),
        image_ids,
        return_images=return_images,
        image_size=image_size,
    )
