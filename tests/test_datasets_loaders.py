"""The VOC 2007, MS-COCO 2014 and NUS-WIDE loaders, on tiny trees the tests write."""

import csv
import json
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from sklearn_certify.datasets import load_coco, load_nuswide, load_voc2007
from sklearn_certify.datasets._images import load_images

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip


def _jpeg(path, color, size=(12, 8)):
    """A solid-colour JPEG of size (width, height); solid colours survive JPEG and resizing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=100)


def _indicator(rows, names):
    Y = np.zeros((len(rows), len(names)), dtype=int)
    for i, row in enumerate(rows):
        for name in row:
            Y[i, names.index(name)] = 1
    return Y


# ----------------------------------------------------------------------------- VOC 2007

# image id -> objects (class name, difficult flag; None = no <difficult> element)
VOC_OBJECTS = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("cat", 1), ("car", 0)],
    "000003": [("person", 0), ("person", 0), ("bicycle", 1), ("bicycle", 0)],
    "000004": [("tvmonitor", 1), ("aeroplane", None)],
}
VOC_COLORS = {"000001": (255, 0, 0), "000002": (0, 255, 0), "000003": (0, 0, 255),
              "000004": (255, 255, 255)}  # fmt: skip


def _voc_xml(image_id, objects):
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"]
    for name, difficult in objects:
        flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(
            f"<object>\n  <name> {name} </name><pose>Left</pose><truncated>0</truncated>{flag}"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


@pytest.fixture
def voc_root(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in VOC_OBJECTS.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, objects))
        _jpeg(voc / "JPEGImages" / f"{image_id}.jpg", VOC_COLORS[image_id])
    lists = {
        "train": ["000001", "000002"],
        "val": ["000003", "000004"],
        "trainval": ["000001", "000002", "000003", "000004"],
        "test": ["000004", "000001"],
    }
    for split, ids in lists.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n\n")
    return tmp_path


def test_voc_trainval_exact(voc_root):
    data = load_voc2007(voc_root, "trainval")
    assert set(data) == {"paths", "Y", "class_names", "image_ids"}
    assert data.class_names == VOC_CLASSES
    assert data.image_ids == ["000001", "000002", "000003", "000004"]
    expected = _indicator(
        [["dog", "person"], ["car"], ["person", "bicycle"], ["aeroplane"]], VOC_CLASSES
    )
    assert_array_equal(data.Y, expected)
    assert data.Y.dtype.kind == "i"
    jpeg_dir = voc_root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    assert data.paths == [os.fspath(jpeg_dir / f"{i}.jpg") for i in data.image_ids]


def test_voc_include_difficult(voc_root):
    data = load_voc2007(voc_root, "trainval", include_difficult=True)
    expected = _indicator(
        [["dog", "person"], ["car", "cat"], ["person", "bicycle"], ["aeroplane", "tvmonitor"]],
        VOC_CLASSES,
    )
    assert_array_equal(data.Y, expected)


@pytest.mark.parametrize(
    "split, ids", [("train", ["000001", "000002"]), ("val", ["000003", "000004"]),
                   ("test", ["000004", "000001"])],
)  # fmt: skip
def test_voc_splits_keep_list_order(voc_root, split, ids):
    data = load_voc2007(voc_root, split)
    assert data.image_ids == ids
    full = load_voc2007(voc_root, "trainval")
    rows = [full.image_ids.index(i) for i in ids]
    assert_array_equal(data.Y, full.Y[rows])


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc_accepts_devkit_or_voc2007_folder(voc_root, sub):
    data = load_voc2007(str(voc_root / sub) if sub else voc_root, "trainval")
    assert_array_equal(data.Y, load_voc2007(voc_root).Y)
    assert data.paths == load_voc2007(voc_root).paths


def test_voc_return_images(voc_root):
    data = load_voc2007(voc_root, "train", return_images=True, image_size=(6, 10))
    assert data.images.shape == (2, 3, 6, 10)
    assert data.images.dtype == np.float32
    assert_allclose(data.images[0], np.broadcast_to([[[1.0]], [[0.0]], [[0.0]]], (3, 6, 10)),
                    atol=2 / 255)  # fmt: skip
    assert_allclose(data.images[1, 1], 1.0, atol=2 / 255)
    assert_array_equal(data.images, load_images(data.paths, (6, 10)))


def test_voc_missing_root_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_voc2007(tmp_path / "nowhere")
    message = str(err.value)
    assert "nowhere" in message
    for part in ("VOCdevkit", "VOC2007", "Annotations", "ImageSets", "Main", "JPEGImages",
                 "trainval.txt"):  # fmt: skip
        assert part in message


def test_voc_root_without_devkit(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageSets/Main") as err:
        load_voc2007(tmp_path)
    assert "JPEGImages" in str(err.value)


def test_voc_missing_split_file_and_annotation(voc_root):
    main = voc_root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.txt") as err:
        load_voc2007(voc_root, "test")
    assert "Annotations" in str(err.value)
    (voc_root / "VOCdevkit" / "VOC2007" / "Annotations" / "000003.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"000003\.xml"):
        load_voc2007(voc_root, "val")


def test_voc_bad_split_and_unknown_class(voc_root):
    with pytest.raises(ValueError, match="trainval") as err:
        load_voc2007(voc_root, "training")
    assert "'test'" in str(err.value)
    xml = voc_root / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml"
    xml.write_text(_voc_xml("000001", [("unicorn", 0)]))
    with pytest.raises(ValueError, match="unicorn"):
        load_voc2007(voc_root, "train")


# ----------------------------------------------------------------------------- MS-COCO


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    # Categories and images deliberately out of order; ids 1, 3, 90 are not contiguous.
    val = {
        "info": {"year": 2014},
        "images": [
            {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 12, "height": 8},
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 12, "height": 8},
            {"id": 100, "file_name": "COCO_val2014_000000000100.jpg", "width": 12, "height": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 90, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0},
            {"id": 4, "image_id": 42, "category_id": 3, "iscrowd": 1},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
        ],
    }
    train = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg"}],
        "annotations": [{"id": 5, "image_id": 9, "category_id": 3}],
        "categories": val["categories"],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(train))
    for image, color in zip(val["images"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        _jpeg(root / "val2014" / image["file_name"], color)
    return root


def test_coco_val_exact(coco_root):
    data = load_coco(coco_root, "val")
    assert data.class_names == ["person", "car", "toothbrush"]
    assert data.category_ids == [1, 3, 90]
    assert data.image_ids == [7, 42, 100]
    assert_array_equal(data.Y, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert data.Y.dtype.kind == "i"
    assert data.paths == [
        os.fspath(coco_root / "val2014" / f"COCO_val2014_{i:012d}.jpg") for i in (7, 42, 100)
    ]
    assert "images" not in data


def test_coco_train_split_and_images(coco_root):
    train = load_coco(coco_root, "train")
    assert train.image_ids == [9]
    assert_array_equal(train.Y, [[0, 1, 0]])
    assert train.paths == [os.fspath(coco_root / "train2014" / "COCO_train2014_000000000009.jpg")]
    val = load_coco(coco_root, "val", return_images=True, image_size=4)
    assert val.images.shape == (3, 3, 4, 4)
    assert_allclose(val.images[:, :, 0, 0], [[0, 1, 0], [1, 0, 0], [0, 0, 1]], atol=2 / 255)


def test_coco_errors(coco_root, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_coco(tmp_path / "missing")
    for part in ("annotations", "instances_val2014.json", "train2014", "val2014"):
        assert part in str(err.value)
    (coco_root / "annotations" / "instances_train2014.json").unlink()
    with pytest.raises(FileNotFoundError, match="instances_train2014.json") as err:
        load_coco(coco_root, "train")
    assert "val2014/" in str(err.value)
    with pytest.raises(FileNotFoundError, match="train2014"):
        (coco_root / "annotations" / "instances_train2014.json").write_text(
            json.dumps({"images": [], "annotations": [], "categories": []})
        )
        load_coco(coco_root, "train", return_images=True)
    with pytest.raises(ValueError, match="'train', 'val'"):
        load_coco(coco_root, "test")


def test_coco_unknown_category_is_an_error(coco_root):
    path = coco_root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 9, "image_id": 42, "category_id": 2})
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category 2"):
        load_coco(coco_root, "val")


# ----------------------------------------------------------------------------- NUS-WIDE

NUS_ROWS = [
    ("images/a.jpg", "['clouds', 'sky']", "train"),
    ("images/b.jpg", "['zebra']", "val"),
    ("images/c.jpg", "['airport', 'zebra', 'person']", "train"),
    ("images/d.jpg", "[]", "train"),
    ("images/e.jpg", "[water, sky]", "val"),  # unquoted names, as ASL's fallback reads them
]


def _write_nus(root, rows=NUS_ROWS, header=("filepath", "label", "split_name"), order=(0, 1, 2)):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "nus_wid_data.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([header[j] for j in order])
        for row in rows:
            writer.writerow([row[j] for j in order])
    for i, (path, _, _) in enumerate(rows):
        _jpeg(root / path, (40 * i, 0, 255))


@pytest.fixture
def nus_root(tmp_path):
    _write_nus(tmp_path / "nus")
    return tmp_path / "nus"


def test_nuswide_train_exact(nus_root):
    data = load_nuswide(nus_root, "train")
    names = data.class_names
    assert len(names) == 81 and names == sorted(names)
    assert names[0] == "airport" and names[-1] == "zebra"
    assert data.image_ids == ["images/a.jpg", "images/c.jpg", "images/d.jpg"]
    expected = _indicator([["clouds", "sky"], ["airport", "zebra", "person"], []], names)
    assert_array_equal(data.Y, expected)
    assert data.paths == [os.fspath(nus_root / p) for p in data.image_ids]


def test_nuswide_test_split_and_val_alias(nus_root):
    data = load_nuswide(nus_root, "test")
    assert data.image_ids == ["images/b.jpg", "images/e.jpg"]
    assert_array_equal(data.Y, _indicator([["zebra"], ["water", "sky"]], data.class_names))
    alias = load_nuswide(nus_root, "val")
    assert alias.image_ids == data.image_ids
    assert_array_equal(alias.Y, data.Y)


def test_nuswide_columns_found_by_name(tmp_path, nus_root):
    _write_nus(tmp_path / "other", order=(2, 0, 1))
    reordered = load_nuswide(tmp_path / "other", "train")
    assert_array_equal(reordered.Y, load_nuswide(nus_root, "train").Y)
    assert reordered.image_ids == ["images/a.jpg", "images/c.jpg", "images/d.jpg"]


def test_nuswide_return_images(nus_root):
    data = load_nuswide(nus_root, "test", return_images=True, image_size=5)
    assert data.images.shape == (2, 3, 5, 5)
    assert_allclose(data.images[0, :, 2, 2], [40 / 255, 0, 1], atol=3 / 255)
    (nus_root / "images" / "e.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="e.jpg"):
        load_nuswide(nus_root, "test", return_images=True)


def test_nuswide_errors(nus_root, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_nuswide(tmp_path / "nothing_here")
    assert "nus_wid_data.csv" in str(err.value) and "images/" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nus_wid_data.csv"):
        load_nuswide(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        load_nuswide(nus_root, "trainval")
    _write_nus(tmp_path / "bad", rows=[("images/x.jpg", "['sky', 'spaceship']", "train")])
    with pytest.raises(ValueError, match="spaceship"):
        load_nuswide(tmp_path / "bad")


def test_bad_image_size_is_rejected_early(voc_root):
    with pytest.raises(TypeError, match="image_size"):
        load_voc2007(voc_root, image_size=(4, 4, 4))
    with pytest.raises(ValueError, match="image_size"):
        load_voc2007(voc_root, image_size=0)
