"""Retrain with the live recipe: progress per step, the clicks learned, a clean stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.live import LiveSettings
from napari_unet.core.model import UNet
from napari_unet.core.retrain import correction_loop, uses_live_recipe
from napari_unet.core.segment import segment
from napari_unet.core.tiling import predict_tiled
from napari_unet.models import load_pretrained


def test_a_removal_click_is_learned_and_the_other_cells_stay(debris):
    image, square = debris
    model = load_pretrained()
    seg = segment(model, image, flips=False)
    assert seg.probability[square].mean() > 0.9
    cells = (seg.instances > 0) & ~square
    labels = np.zeros(image.shape, np.int32)
    labels[square] = 1
    torch.set_num_threads(1)
    loop = correction_loop(model, image, labels, 20, settings=LiveSettings(batch_size=2),
                           num_threads=1)
    steps = [p.step for p in loop]
    assert steps == list(range(1, 21))
    fg = predict_tiled(model, image, device="cpu")[1]
    assert fg[square].mean() < 0.5
    assert fg[cells].mean() > 0.9
    record = model.metadata["training"]
    assert record["recipe"] == "live corrections" and record["steps_completed"] == 20
    assert not model.training


def test_stopping_early_keeps_the_finished_steps(debris):
    image, square = debris
    model = load_pretrained()
    labels = np.where(square, 1, 0).astype(np.int32)
    loop = correction_loop(model, image, labels, 10, settings=LiveSettings(device="cpu"))
    for p in loop:
        if p.step == 3:
            break
    loop.close()
    assert model.metadata["training"]["steps_completed"] == 3
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_nothing_to_learn_is_a_clear_error(debris):
    image, _ = debris
    model = load_pretrained()
    with pytest.raises(ValueError, match="annotations"):
        list(correction_loop(model, image, np.zeros(image.shape, np.int32), 5))
    with pytest.raises(ValueError, match="steps"):
        list(correction_loop(model, image, np.ones(image.shape, np.int32), 0))


def test_which_retrains_take_the_live_recipe():
    trained, plane = load_pretrained(), [np.zeros((8, 8), np.int32)]
    assert uses_live_recipe(trained, plane, dense=False)
    assert not uses_live_recipe(trained, plane, dense=True)
    assert not uses_live_recipe(trained, plane * 2, dense=False)
    assert not uses_live_recipe(trained, [np.zeros((2, 8, 8))], dense=False)
    assert not uses_live_recipe(None, plane, dense=False)
    assert not uses_live_recipe(UNet(depth=2, base_channels=4), plane, dense=False)  # new
