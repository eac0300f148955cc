"""MS-COCO 2014 as a multi-label data set (80 categories)."""

from __future__ import annotations

import json
import os

import numpy as np
from sklearn.utils import Bunch

from ._loader import Layout, fill_doc, make_bunch

COCO_SPLITS = ("train", "val")

_LAYOUT = Layout(
    "MS-COCO 2014",
    COCO_SPLITS,
    """\
<root>/
+-- annotations/
|   +-- instances_train2014.json
|   +-- instances_val2014.json
+-- train2014/     COCO_train2014_000000000009.jpg, ...
+-- val2014/       COCO_val2014_000000000042.jpg, ...""",
)


@fill_doc
def load_coco(
    root: str | os.PathLike,
    split: str = "val",
    *,
    return_images: bool = False,
    image_size: int | tuple[int, int] = 224,
) -> Bunch:
    """Load MS-COCO 2014 as a multi-label image data set (80 categories).

    Nothing is downloaded: ``root`` must hold the official 2014 release (the
    ``instances`` annotation files and the image folders). An image has a category
    when at least one object of it is annotated (crowd annotations included). The
    category ids of the JSON file (1 to 90, with gaps) are mapped to contiguous
    columns 0 to 79 in ascending id order. Images without any annotation (about 1% of
    COCO) are kept, with an all-zero row of ``Y``. Images are sorted by image id.

    Parameters
    ----------
    root : str or path-like
        The COCO folder. Expected layout::

            <root>/
            +-- annotations/
            |   +-- instances_train2014.json
            |   +-- instances_val2014.json
            +-- train2014/     COCO_train2014_000000000009.jpg, ...
            +-- val2014/       COCO_val2014_000000000042.jpg, ...

    split : {"val", "train"}, default="val"
        ``"train"`` (82,783 images) or ``"val"`` (40,504 images), the papers' test set.
    return_images : bool, default=False
        Whether to also load every image into memory (``images`` below). The
        training split at 224 x 224 takes about 50 GB; for feature extraction pass
        ``paths`` to :class:`~sklearn_certify.features.ImageFeatureExtractor` instead.
    %(image_size)s

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        paths : list of str
            The image file of each image, in ``<root>/<split>2014/``.
        Y : ndarray of shape (n_images, n_categories), dtype int
            Indicator matrix: ``Y[i, j] == 1`` when image ``i`` has category ``j``;
            ``n_categories`` is 80 for the official files.
        class_names : list of str
            Category names from the JSON file, in ascending category-id order.
        image_ids : list of int
            The COCO image ids, ascending.
        category_ids : list of int
            The COCO category id behind each column of ``Y``.
        %(images)s

    Raises
    ------
    FileNotFoundError
        If ``root`` or the annotation file is missing (or, with
        ``return_images=True``, the image folder); the message shows the expected
        layout.
    ValueError
        If ``split`` is not ``"train"`` or ``"val"``, or an annotation refers to an
        unknown image or category.

    Examples
    --------
    >>> from sklearn_certify.datasets import load_coco
    >>> test = load_coco("~/data/coco", "val")  # doctest: +SKIP
    >>> test.Y.shape  # doctest: +SKIP
    (40504, 80)
    >>> test.class_names[:3]  # doctest: +SKIP
    ['person', 'bicycle', 'car']
    """
    _LAYOUT.check_arguments(split, image_size)
    root = _LAYOUT.root(root)
    ann_file = _LAYOUT.require_file(root / "annotations" / f"instances_{split}2014.json")
    with open(ann_file, encoding="utf-8") as f:
        data = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(
                f"{os.fspath(ann_file)!r} has no {key!r} entry; is it a COCO "
                "'instances' annotation file?"
            )

    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_ids = [int(c["id"]) for c in categories]
    column = {cat_id: j for j, cat_id in enumerate(category_ids)}
    images = sorted(data["images"], key=lambda im: im["id"])
    image_ids = [int(im["id"]) for im in images]
    row = {image_id: i for i, image_id in enumerate(image_ids)}

    Y = np.zeros((len(image_ids), len(category_ids)), dtype=int)
    for ann in data["annotations"]:
        try:
            Y[row[ann["image_id"]], column[ann["category_id"]]] = 1
        except KeyError:
            raise ValueError(
                f"annotation {ann.get('id')!r} in {os.fspath(ann_file)!r} refers to image "
                f"{ann.get('image_id')!r} / category {ann.get('category_id')!r}, which the "
                "file does not list."
            ) from None

    image_dir = root / f"{split}2014"
    if return_images:
        _LAYOUT.require_dir(image_dir, what="image folder")
    paths = [os.fspath(image_dir / im["file_name"]) for im in images]
    bunch = make_bunch(
        paths,
        Y,
        [str(c["name"]) for c in categories],
        image_ids,
        return_images=return_images,
        image_size=image_size,
    )
    bunch.category_ids = category_ids
    return bunch
