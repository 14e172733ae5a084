"""Calibrated threshold: Bayes' prior correction of a class-balanced network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.calibration import ClassMass, calibrated_threshold
from napari_unet.core.model import UNet
from napari_unet.core.synthetic import make_cells
from napari_unet.core.training import train_to_completion


def test_threshold_follows_the_class_priors():
    balanced = np.array([1.0, 1.0])
    assert calibrated_threshold(balanced, 0.5) == pytest.approx(0.5)
    assert calibrated_threshold(balanced, 0.2) == pytest.approx(0.8)  # cells rare: high
    assert calibrated_threshold(balanced, 0.8) == pytest.approx(0.2)  # membranes rare: low
    assert calibrated_threshold(np.array([0.0, 1.0]), 0.5) is None


def test_threshold_is_the_bayes_decision_of_a_balanced_posterior():
    """A pixel type with cell probability q under priors pi is called cell iff q > 1/2."""
    prior, mass = 0.15, np.array([2.0, 1.5])
    t = calibrated_threshold(mass, prior)
    for q in (0.3, 0.49, 0.51, 0.7):
        # posterior the network learns under the training's weighted class masses
        odds = q / (1 - q) * (mass[1] / mass[0]) * ((1 - prior) / prior)
        p = odds / (1 + odds)
        assert (p > t) == (q > 0.5)


def test_class_mass_counts_balanced_patches_equally():
    mass = ClassMass()
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :1] = 1  # patch 0: 4 cell px of 16
    weights = torch.ones(2, 4, 4)  # patch 1: background only
    mass.add(target, weights)
    assert mass.mass.tolist() == [8.0 + 16.0, 8.0]


def test_training_stores_a_threshold_and_the_object_scale():
    image, labels = make_cells((96, 96), n_cells=6, seed=3)
    model = UNet(depth=1, base_channels=4)
    train_to_completion(model, image, labels, steps=3, dense=True, seed=0, patch_size=32)
    cells = (labels > 0).mean()
    assert 0.05 <= model.metadata["threshold"] <= 0.95
    assert model.metadata["training"]["cell_prior"] == pytest.approx(cells)
    scale = model.metadata["scale"]
    assert scale["data_diameter"] == pytest.approx(scale["object_diameter"])
