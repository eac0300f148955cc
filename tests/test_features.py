"""ImageFeatureExtractor with a tiny torch backbone."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_certify.datasets._images import load_images
from sklearn_certify.features import ImageFeatureExtractor

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def make_backbone(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(2),
    )  # 4 channels x 2 x 2 = 16 features after flattening


def by_hand(backbone, images):
    """What the extractor should compute: normalise, eval-mode forward, flatten."""
    backbone.eval()
    x = torch.as_tensor(images)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = backbone((x - mean) / std)
    return out.reshape(len(images), -1).numpy()


@pytest.fixture
def images():
    return np.random.default_rng(0).random((7, 3, 8, 8), dtype=np.float32)


@pytest.fixture
def paths(tmp_path):
    rng = np.random.default_rng(1)
    out = []
    for i in range(5):
        pixels = rng.integers(0, 256, size=(10 + i, 14, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        out.append(str(path))
    return out


def test_arrays_match_backbone_by_hand(images):
    backbone = make_backbone()
    extractor = ImageFeatureExtractor(backbone, image_size=8).fit()
    features = extractor.transform(images)
    assert features.shape == (7, 16) and features.dtype == np.float32
    assert extractor.n_features_out_ == 16
    assert_allclose(features, by_hand(make_backbone(), images), rtol=1e-5, atol=1e-6)


def test_paths_are_loaded_resized_and_match_arrays(paths):
    extractor = ImageFeatureExtractor(make_backbone(), image_size=(8, 6), batch_size=2).fit()
    from_paths = extractor.transform(paths)
    loaded = load_images(paths, (8, 6))
    assert loaded.shape == (5, 3, 8, 6)
    assert_allclose(from_paths, by_hand(make_backbone(), loaded), rtol=1e-5, atol=1e-6)
    assert_array_equal(extractor.transform(np.array(paths)), from_paths)
    # A PIL bilinear resize of one image, done here, gives the same input.
    with Image.open(paths[0]) as img:
        manual = np.asarray(img.convert("RGB").resize((6, 8), Image.Resampling.BILINEAR))
    assert_allclose(loaded[0], manual.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_batch_size_does_not_change_features(images):
    one = ImageFeatureExtractor(make_backbone(), image_size=8, batch_size=1).fit()
    many = ImageFeatureExtractor(make_backbone(), image_size=8, batch_size=64).fit()
    assert_allclose(one.transform(images), many.transform(images), rtol=1e-5, atol=1e-6)


def test_other_sizes_grey_and_uint8_arrays(images):
    extractor = ImageFeatureExtractor(make_backbone(), image_size=4).fit()
    resized = F.interpolate(torch.as_tensor(images), size=(4, 4), mode="bilinear",
                            align_corners=False, antialias=True).numpy()  # fmt: skip
    assert_allclose(extractor.transform(images), by_hand(make_backbone(), resized), atol=1e-6)
    grey = images[:, :1, :4, :4]
    assert_allclose(
        extractor.transform(grey[:, 0]),
        by_hand(make_backbone(), np.repeat(grey, 3, axis=1)),
        atol=1e-6,
    )
    as_uint8 = (images[:, :, :4, :4] * 255).round().astype(np.uint8)
    assert_allclose(
        extractor.transform(as_uint8),
        extractor.transform(as_uint8.astype(np.float32) / 255),
        atol=1e-6,
    )


def test_weights_file_and_callable_backbone(tmp_path, images):
    target = make_backbone(seed=1)
    target.train()
    target(torch.randn(4, 3, 8, 8))  # move the BatchNorm running statistics off defaults
    weights = tmp_path / "encoder.pt"
    torch.save(target.state_dict(), weights)

    user_module = make_backbone(seed=0)
    before = {k: v.clone() for k, v in user_module.state_dict().items()}
    loaded = ImageFeatureExtractor(user_module, image_size=8, weights=weights).fit()
    assert_allclose(loaded.transform(images), by_hand(target, images), rtol=1e-5, atol=1e-6)
    # The module passed as a parameter is left as it was.
    assert user_module.training
    for key, value in user_module.state_dict().items():
        assert torch.equal(value, before[key])

    from_factory = ImageFeatureExtractor(make_backbone, image_size=8, weights=str(weights)).fit()
    assert_allclose(from_factory.transform(images), loaded.transform(images), atol=1e-6)
    assert not any(p.requires_grad for p in from_factory.backbone_.parameters())

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ImageFeatureExtractor(make_backbone(), weights=tmp_path / "missing.pt").fit()


def test_clone_pickle_and_feature_names(images):
    extractor = ImageFeatureExtractor(make_backbone(), image_size=8, batch_size=3)
    copy = clone(extractor)
    assert copy.get_params()["batch_size"] == 3
    assert copy.backbone is not extractor.backbone
    with pytest.raises(NotFittedError):
        copy.transform(images)
    fitted = copy.fit()
    restored = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(restored.transform(images), fitted.transform(images))
    names = fitted.get_feature_names_out()
    assert len(names) == 16 and names[0] == "imagefeatureextractor0"


def test_pipeline_with_linear_heads(images, paths):
    rng = np.random.default_rng(2)
    Y = rng.integers(0, 2, size=(len(images), 3))
    Y[0], Y[1] = 0, 1  # both classes in every column
    pipe = Pipeline([
        ("features", ImageFeatureExtractor(make_backbone(), image_size=8, batch_size=4)),
        ("heads", MultiOutputClassifier(LogisticRegression())),
    ])  # fmt: skip
    pipe.fit(images, Y)
    assert pipe.predict(images).shape == (7, 3)
    path_pipe = clone(pipe).fit(paths, Y[:5])
    assert set(np.unique(path_pipe.predict(paths))) <= {0, 1}


def test_verbose_shows_progress(images, capsys):
    ImageFeatureExtractor(make_backbone(), image_size=8, batch_size=2, verbose=1).fit().transform(
        images
    )
    assert "features" in capsys.readouterr().err


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"backbone": "resnet"}, TypeError, "backbone"),
        ({"backbone": lambda: 3}, TypeError, "returned int"),
        ({"mean": (0.5, 0.5)}, ValueError, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, ValueError, "std"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"image_size": (8, 8, 8)}, TypeError, "image_size"),
        ({"device": "not-a-device"}, ValueError, "device"),
    ],
)
def test_invalid_parameters(params, error, match):
    params = {"backbone": make_backbone(), **params}
    with pytest.raises(error, match=match):
        ImageFeatureExtractor(**params).fit()


def test_invalid_inputs(images):
    extractor = ImageFeatureExtractor(make_backbone(), image_size=8).fit()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor.transform(images * 255)
    with pytest.raises(ValueError, match="shape"):
        extractor.transform(images[:, :2])
    with pytest.raises(TypeError, match="one path"):
        extractor.transform("image.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        extractor.transform(["nope.jpg"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_unavailable_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ImageFeatureExtractor(make_backbone(), device="cuda").fit()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(images):
    cpu = ImageFeatureExtractor(make_backbone(), image_size=8).fit()
    gpu = ImageFeatureExtractor(make_backbone(), image_size=8, device="cuda").fit()
    assert gpu.device_.type == "cuda"
    assert next(gpu.backbone_.parameters()).is_cuda
    features = gpu.transform(images)
    assert isinstance(features, np.ndarray) and features.dtype == np.float32
    assert_allclose(features, cpu.transform(images), rtol=1e-4, atol=1e-4)
