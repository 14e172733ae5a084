"""The shipped starting models: found in the installed package, load offline, segment cells.

Thresholds are measured margins below the scores of the shipped ``nuclei_fluo.pt`` on the
plugin's synthetic sample data and of ``phase_cells.pt`` on a crop of the shipped Usiigaci
sample (see ``src/napari_unet/models/README.md``).  The EM and H&E models have no shipped
sample: only their files, provenance and shapes are checked here.
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
from napari_unet.models import (
    ALIASES,
    PRETRAINED,
    load_pretrained,
    pretrained_path,
    resolve_name,
    starting_models,
)

NAME = "nuclei, fluorescence"
# Measured on the shipped model (seeds 1, 2, 3; label_instances defaults, threshold 0.8):
# accuracy@0.5 1.0 / 1.0 / 1.0, pixel IoU 0.920 / 0.937 / 0.938 (see models/README.md).
# Asserted with a margin of ~0.1 below the worst seed.
MIN_ACCURACY = 0.90
MIN_PIXEL_IOU = 0.82
SHORT_NAMES = ("nuclei", "phase-cells", "em-cells", "he-nuclei")
SHAPES = {"nuclei": (1, 2), "phase-cells": (1, 3), "em-cells": (1, 2), "he-nuclei": (3, 2)}
# phase_cells.pt on rows 0-255, columns 256-511 of the Usiigaci sample (set29, a val set),
# segment() defaults: measured accuracy@0.5 0.833, pixel IoU 0.784 (models/README.md),
# asserted with a margin
PHASE_CROP = (slice(0, 256), slice(256, 512))
MIN_PHASE_ACCURACY = 0.65
MIN_PHASE_PIXEL_IOU = 0.65


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.set_num_threads(2)
    return load_pretrained(NAME)


def test_registry_points_into_the_installed_package() -> None:
    assert resolve_name(NAME) in PRETRAINED
    path = pretrained_path(NAME)
    package_dir = Path(napari_unet.__file__).resolve().parent
    assert path.resolve().parent == package_dir / "models"
    assert path.suffix == ".pt"
    assert 0.1e6 < path.stat().st_size < 10e6


def test_unknown_name_is_a_value_error_listing_the_names() -> None:
    with pytest.raises(ValueError, match="unknown starting model") as info:
        pretrained_path("mitochondria, EM")
    for name in SHORT_NAMES:
        assert name in str(info.value)


def test_short_names_and_the_old_display_name_resolve() -> None:
    assert list(PRETRAINED) == list(SHORT_NAMES)
    assert resolve_name("nuclei, fluorescence") == "nuclei"
    assert pretrained_path("nuclei, fluorescence") == pretrained_path("nuclei")
    assert set(ALIASES.values()) <= set(PRETRAINED)
    listed = starting_models()
    assert list(listed) == list(SHORT_NAMES)  # every file ships
    assert all(text and "\n" not in text for text in listed.values())


@pytest.mark.parametrize("name", SHORT_NAMES)
def test_every_starting_model_ships_with_its_provenance(name: str) -> None:
    path = pretrained_path(name)
    assert 0.1e6 < path.stat().st_size < 10e6
    model = load_pretrained(name)
    assert not model.training
    assert (model.in_channels, model.n_classes) == SHAPES[name]
    prov = model.metadata["provenance"]
    assert prov["data"]["license"] and prov["data"]["citation"]
    assert prov["steps"] > 0 and prov["training_time_s"] > 0
    metrics = prov.get("metrics_val") or prov["metrics_val_fluo"]
    assert 0.0 < metrics["accuracy_at_0.5"] <= 1.0
    if name != "nuclei":
        assert prov["name"] == name
        assert model.metadata["scale"]["data_diameter"] > 0
        assert 0.0 < model.metadata["threshold"] < 1.0
        assert 0.0 <= metrics["pixel_error"] < 1.0
    if name == "em-cells":
        assert "NonCommercial" in prov["data"]["license"]


def test_phase_model_segments_a_crop_of_the_shipped_phase_sample() -> None:
    from napari_unet._sample_data import usiigaci_cells
    from napari_unet.core.segment import segment

    (image, _, _), (gt, _, _) = usiigaci_cells()
    image, gt = image[PHASE_CROP], gt[PHASE_CROP]
    seg = segment(load_pretrained("phase-cells"), image, device="cpu")
    assert seg.instances.shape == gt.shape
    assert matching(seg.instances, gt, threshold=0.5)["accuracy"] >= MIN_PHASE_ACCURACY
    assert iou(seg.instances > 0, gt > 0) >= MIN_PHASE_PIXEL_IOU


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
