"""PASCAL VOC 2007 as a multi-label data set (20 classes)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from sklearn.utils import Bunch

from ._loader import Layout, fill_doc, indicator_matrix, make_bunch

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_SPLITS = ("train", "val", "trainval", "test")

_LAYOUT = Layout(
    "PASCAL VOC 2007",
    VOC_SPLITS,
    """\
<root>/                        (or <root> = VOCdevkit/VOC2007 itself)
+-- VOCdevkit/
    +-- VOC2007/
        +-- Annotations/       000005.xml, ... (one XML file per image)
        +-- ImageSets/
        |   +-- Main/          train.txt, val.txt, trainval.txt, test.txt (one image id a line)
        +-- JPEGImages/        000005.jpg, ...
(the test split comes from the separate VOCtest_06-Nov-2007 archive, which unpacks
into the same VOCdevkit/VOC2007 folders)""",
)


def _find_voc_dir(root: Path) -> Path:
    _LAYOUT.root(root)
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise _LAYOUT.error(
        f"no ImageSets/Main folder in {os.fspath(root)!r}, {os.fspath(root / 'VOC2007')!r} "
        f"or {os.fspath(root / 'VOCdevkit' / 'VOC2007')!r}."
    )


def _parse_annotation(path: Path, include_difficult: bool) -> list[int]:
    """Indices of the classes with at least one counted object in one XML file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise _LAYOUT.error(f"annotation file {os.fspath(path)!r} does not exist.") from None
    present = []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(
                f"{os.fspath(path)!r} annotates an object of unknown class {name!r}; "
                f"VOC 2007 classes are {list(VOC_CLASSES)}."
            )
        difficult = (obj.findtext("difficult") or "0").strip() not in ("", "0")
        if include_difficult or not difficult:
            present.append(VOC_CLASSES.index(name))
    return present


@fill_doc
def load_voc2007(
    root: str | os.PathLike,
    split: str = "trainval",
    *,
    include_difficult: bool = False,
    return_images: bool = False,
    image_size: int | tuple[int, int] = 224,
) -> Bunch:
    """Load PASCAL VOC 2007 as a multi-label image data set (20 classes).

    Nothing is downloaded: ``root`` must hold the official VOCdevkit release. An image
    has a class when at least one object of that class is annotated on it and is not
    marked *difficult* (``include_difficult=True`` counts difficult objects too). Images
    are listed in the order of ``ImageSets/Main/<split>.txt``.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``VOCdevkit/VOC2007``; ``VOCdevkit`` or ``VOC2007`` itself
        are accepted too. Expected layout::

            <root>/
            +-- VOCdevkit/
                +-- VOC2007/
                    +-- Annotations/       000005.xml, ...
                    +-- ImageSets/Main/    train.txt, val.txt, trainval.txt, test.txt
                    +-- JPEGImages/        000005.jpg, ...

    split : {"trainval", "train", "val", "test"}, default="trainval"
        Which image list to read. The papers train on ``"trainval"`` (5,011 images)
        and test on ``"test"`` (4,952 images, from the separate VOC 2007 test archive).
    include_difficult : bool, default=False
        Whether objects marked difficult make their class present.
    %(return_images)s
    %(image_size)s

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        paths : list of str
            The JPEG file of each image.
        Y : ndarray of shape (n_images, 20), dtype int
            Indicator matrix: ``Y[i, j] == 1`` when image ``i`` has class ``j``.
        class_names : list of str
            The 20 classes in the standard alphabetical VOC order (``"aeroplane"`` to
            ``"tvmonitor"``).
        image_ids : list of str
            The VOC image ids, e.g. ``"000005"``.
        %(images)s

    Raises
    ------
    FileNotFoundError
        If ``root``, the split list or an annotation file is missing; the message
        shows the expected layout.
    ValueError
        If ``split`` is not one of the four VOC splits.

    Examples
    --------
    >>> from sklearn_certify.datasets import load_voc2007
    >>> train = load_voc2007("~/data/VOCdevkit", "trainval")  # doctest: +SKIP
    >>> train.Y.shape  # doctest: +SKIP
    (5011, 20)
    >>> train.class_names[:3]  # doctest: +SKIP
    ['aeroplane', 'bicycle', 'bird']
    """
    _LAYOUT.check_arguments(split, image_size)
    voc_dir = _find_voc_dir(Path(root).expanduser())
    split_file = _LAYOUT.require_file(voc_dir / "ImageSets" / "Main" / f"{split}.txt")
    image_ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]

    annotations = _LAYOUT.require_dir(voc_dir / "Annotations")
    Y = indicator_matrix(
        (
            _parse_annotation(annotations / f"{image_id}.xml", include_difficult)
            for image_id in image_ids
        ),
        len(VOC_CLASSES),
    )

    jpeg_dir = voc_dir / "JPEGImages"
    if return_images:
        _LAYOUT.require_dir(jpeg_dir)
    paths = [os.fspath(jpeg_dir / f"{image_id}.jpg") for image_id in image_ids]
    return make_bunch(
        paths, Y, list(VOC_CLASSES), image_ids, return_images=return_images, image_size=image_size
    )
