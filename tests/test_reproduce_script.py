"""examples/reproduce_papers.py end to end, at tiny sizes: on make_multidigit, and on a
fake VOC 2007 tree with a tiny encoder passed by --backbone-module."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn

from tests.test_datasets_loaders import VOC_CLASSES, _jpeg, _voc_xml

from ._helpers import repo_module

CURVE_COLUMNS = {"precision", "recall", "f1", "method", "k", "label"}
MG_LABELS = ["MultiGuard", "MultiGuard (first terms only)", "Jia et al. 2020"]
PG_LABELS = ["PG-Bagging", "Bagging (Jia et al. 2021)", "PG-DPA", "DPA (Levine & Feizi 2021)"]
TINY = ["--quick", "--n-draws", "40", "--n-estimators", "12", "--n-partitions", "6",
        "--mg-epochs", "1", "--pg-epochs", "2", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return repo_module("examples/reproduce_papers.py")


def _beyond_reach():
    """The MultiGuard curves run to R = 2, past what the tiny runs' 40 draws certify."""
    return pytest.warns(UserWarning, match="lies at or beyond")


def _check_curves(out: Path, name: str, radius_col: str, labels, n_radii=None):
    curves = pd.read_csv(out / f"{name}_curves.csv")
    assert set(curves.columns) == CURVE_COLUMNS | {radius_col}
    assert list(pd.unique(curves["label"])) == labels
    per_label = curves.groupby("label", sort=False)
    sizes = per_label.size()
    assert (sizes == sizes.iloc[0]).all()
    if n_radii is not None:
        assert sizes.iloc[0] == n_radii
    for _, frame in per_label:
        assert frame[radius_col].is_monotonic_increasing
        for metric in ("precision", "recall", "f1"):
            values = frame[metric].to_numpy()
            assert np.all((values >= 0) & (values <= 1))
            assert np.all(np.diff(values) <= 1e-12), "certified metrics must not grow with R"
    table = pd.read_csv(out / f"{name}_table.csv")
    assert list(table.columns) == [radius_col, "label", "k", "precision", "recall", "f1"]
    assert set(table["label"]) == set(labels)
    assert (out / f"{name}_curves.png").stat().st_size > 0
    return curves


def _metric(curves, label, metric="f1"):
    return curves.loc[curves["label"] == label, metric].to_numpy()


def test_multidigit_quick(script, tmp_path):
    out = tmp_path / "out"
    with _beyond_reach():
        report = script.main(
            [*TINY, "--n-train", "300", "--mg-n-test", "30", "--pg-n-test", "30", "--out", str(out)]
        )

    mg = _check_curves(out, "multiguard", "radius", MG_LABELS, n_radii=script.MG_RADII.size)
    # Eq. 8 with its second terms certifies at least what its first terms alone do.
    assert np.all(_metric(mg, MG_LABELS[0]) >= _metric(mg, MG_LABELS[1]) - 1e-12)
    pg = _check_curves(out, "poisoningguard", "T", PG_LABELS)
    for ours, theirs in ((PG_LABELS[0], PG_LABELS[1]), (PG_LABELS[2], PG_LABELS[3])):
        assert np.all(_metric(pg, ours) >= _metric(pg, theirs) - 1e-12)

    paper = pd.read_csv(out / "multiguard_vs_paper.csv")
    assert paper["label"].tolist() == MG_LABELS
    assert paper["paper_f1"].tolist() == [42.6, 31.8, 33.0]
    at_half = mg[np.isclose(mg["radius"], 0.5)].set_index("label")
    assert_array_equal(paper["this_run_f1"], (100 * at_half.loc[MG_LABELS, "f1"]).round(1))

    counts = np.load(out / "multiguard_counts.npz")
    assert counts["counts"].shape == (30, 10)
    assert_array_equal(counts["counts"].sum(axis=1), 40)  # n_draws * k' (k' = 1)
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["dataset"] == "multidigit"
    assert run["settings"]["n_draws"] == 40 and run["settings"]["sigma"] == 0.5
    assert run["settings"]["mg_k"] == 3 and run["settings"]["max_samples"] == 100
    assert report["multiguard"]["results"][0].sizes.shape == (30, script.MG_RADII.size)
    assert report["poisoningguard"]["results"][0].n_draws == 12


# ------------------------------------------------------------------ fake VOC 2007 tree
TINY_BACKBONE = """
from torch import nn


def make_encoder():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


def _make_voc(root: Path, n_trainval=16, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(1, n_trainval + n_test + 1)]
    for image_id in ids:
        classes = rng.choice(6, size=rng.integers(1, 4), replace=False)
        objects = [(VOC_CLASSES[c], 0) for c in classes]
        (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, objects))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        _jpeg(voc / "JPEGImages" / f"{image_id}.jpg", color, size=(20, 14))
    main = voc / "ImageSets" / "Main"
    main.joinpath("trainval.txt").write_text("\n".join(ids[:n_trainval]) + "\n")
    main.joinpath("test.txt").write_text("\n".join(ids[n_trainval:]) + "\n")
    return root


@pytest.fixture
def voc_run(tmp_path):
    root = _make_voc(tmp_path / "data")
    module_file = tmp_path / "tiny_backbone.py"
    module_file.write_text(TINY_BACKBONE)
    torch.manual_seed(0)
    namespace = {}
    exec(TINY_BACKBONE, namespace)
    weights = tmp_path / "encoder.pth"
    torch.save(namespace["make_encoder"]().state_dict(), weights)
    args = [*TINY, "--data-root", str(root), "--dataset", "voc2007",
            "--backbone-module", f"{module_file}:make_encoder", "--backbone-weights",
            str(weights), "--image-size", "16", "--workers", "0", "--mg-n-test", "5",
            "--max-samples", "6", "--train-batch-size", "8", "--sample-batch-size", "25",
            "--feature-batch-size", "5"]  # fmt: skip
    return args, tmp_path / "out"


def test_fake_voc_with_backbone_module(script, voc_run):
    args, out = voc_run
    with _beyond_reach():
        report = script.main([*args, "--out", str(out)])

    mg = _check_curves(out, "multiguard", "radius", MG_LABELS, n_radii=script.MG_RADII.size)
    assert (mg["k"] == 3).all()  # VOC: k' = 1, k = 3
    pg = _check_curves(out, "poisoningguard", "T", PG_LABELS)
    assert (pg["k"] == 3).all()
    mg_result = report["multiguard"]["results"][0]
    assert mg_result.sizes.shape == (5, script.MG_RADII.size)
    assert mg_result.Y.shape == (5, 20)
    assert report["poisoningguard"]["results"][0].sizes.shape[0] == 8  # the whole test split
    assert isinstance(report["poisoningguard"]["results"][0].params["n_train"], int)
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["dataset"] == "voc2007" and run["settings"]["pg_head"] == "asl"
    assert run["n_train"] == 16 and run["n_classes"] == 20


def test_fake_voc_head_only_multiguard(script, voc_run):
    args, out = voc_run
    with _beyond_reach():
        report = script.main(
            [*args, "--papers", "multiguard", "--mg-train", "head", "--out", str(out)]
        )
    assert set(report) == {"settings", "multiguard"}
    assert (out / "multiguard_curves.csv").exists()
    assert not (out / "poisoningguard_curves.csv").exists()


def test_read_state_dict_picks_moco_encoder(script, tmp_path):
    encoder = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten())
    state = {f"module.encoder_q.{k}": v for k, v in encoder.state_dict().items()}
    state["module.encoder_k.0.weight"] = torch.zeros(1)
    state["module.queue"] = torch.zeros(3)
    path = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 1, "state_dict": state}, path)
    loaded = script.read_state_dict(path)
    assert set(loaded) == set(encoder.state_dict())


@pytest.mark.parametrize("args", [["--backbone-module", "x:y"], ["--dataset", "coco"]])
def test_real_data_arguments_need_a_data_root(script, tmp_path, args):
    with pytest.raises(SystemExit):
        script.main([*args, "--out", str(tmp_path)])
