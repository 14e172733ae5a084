"""The shipped starting model: found in the installed package, loads offline, segments cells.

Thresholds are measured margins below the scores of the shipped ``nuclei_fluo.pt`` on the
plugin's synthetic sample data (see ``src/napari_unet/models/README.md``).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_unet
from napari_unet._sample_data import SAMPLE_CELLS, SAMPLE_SHAPE
from napari_unet.core.instances import label_instances
from napari_unet.core.metrics import iou, matching
from napari_unet.core.model import UNet
from napari_unet.core.synthetic import make_cells
from napari_unet.core.tiling import predict_tiled
from napari_unet.models import PRETRAINED, load_pretrained, pretrained_path

NAME = "nuclei, fluorescence"
# Measured on the shipped model (seeds 1, 2, 3; label_instances defaults, threshold 0.8):
# accuracy@0.5 1.0 / 1.0 / 1.0, pixel IoU 0.920 / 0.937 / 0.938 (see models/README.md).
# Asserted with a margin of ~0.1 below the worst seed.
MIN_ACCURACY = 0.90
MIN_PIXEL_IOU = 0.82


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.set_num_threads(2)
    return load_pretrained(NAME)


def test_registry_points_into_the_installed_package() -> None:
    assert NAME in PRETRAINED
    path = pretrained_path(NAME)
    package_dir = Path(napari_unet.__file__).resolve().parent
    assert path.resolve().parent == package_dir / "models"
    assert path.suffix == ".pt"
    assert 0.1e6 < path.stat().st_size < 10e6


def test_unknown_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown starting model"):
        pretrained_path("mitochondria, EM")


def test_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the starting model tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = load_pretrained()
    assert isinstance(model, UNet)
    assert not model.training
    assert model.in_channels == 1 and model.n_classes == 2


def test_provenance_is_recorded(model: UNet) -> None:
    prov = model.metadata["provenance"]
    assert "DSB2018" in prov["data"]["name"]
    assert "CC0" in prov["data"]["license"]
    assert "Caicedo" in prov["data"]["citation"]
    assert prov["steps"] > 0 and prov["training_time_s"] > 0
    assert 0.0 < prov["metrics_val_fluo"]["accuracy_at_0.5"] <= 1.0
    assert "normalization" in model.metadata


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_segments_the_synthetic_sample_cells(model: UNet, seed: int) -> None:
    image, gt = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=seed)
    prob = predict_tiled(model, image, device="cpu")
    assert prob.shape == (2, *SAMPLE_SHAPE)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-4)
    pred = label_instances(prob[1])
    scores = matching(pred, gt, threshold=0.5)
    assert scores["accuracy"] >= MIN_ACCURACY, scores
    assert iou(pred > 0, gt > 0) >= MIN_PIXEL_IOU
