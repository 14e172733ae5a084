"""Random-forest pixel classifier baseline (ilastik's recipe) for the segmentation benchmark.

Features: ``skimage.feature.multiscale_basic_features`` (intensity, edges, texture at sigmas
1..16) on the percentile-normalized image; classifier: ``RandomForestClassifier`` trained on the
labeled pixels only (cell vs background, the same sparse or dense labels the U-Net gets).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from protocols import percentile_normalize
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

N_TREES = 100
MAX_DEPTH = 12
MAX_TRAIN_PIXELS = 50_000
SIGMA_RANGE = (1.0, 16.0)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """``(Y, X, F)`` float32 features of a 2D image (F = 20 for sigmas 1, 2, 4, 8, 16)."""
    feats = multiscale_basic_features(
        percentile_normalize(image),
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=SIGMA_RANGE[0],
        sigma_max=SIGMA_RANGE[1],
    )
    return feats.astype(np.float32)


def train_forest(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    dense: bool,
    seed: int = 0,
    n_jobs: int = 2,
) -> tuple[RandomForestClassifier, float]:
    """Fit the forest on the labeled pixels; return it and the CPU time (features + fit).

    CPU time (all threads of this process) rather than wall time: the benchmark machine is
    shared, so wall time mostly measures the other users.  Dense labels are subsampled to
    ``MAX_TRAIN_PIXELS`` random pixels.
    """
    start = time.process_time()
    xs, ys = [], []
    for image, lab in zip(images, labels, strict=True):
        feats = pixel_features(image)
        if dense:
            mask = np.ones(lab.shape, dtype=bool)
            target = lab >= 1
        else:
            mask = lab >= 1
            target = lab >= 2
        xs.append(feats[mask])
        ys.append(target[mask])
    x = np.concatenate(xs)
    y = np.concatenate(ys).astype(np.int8)
    if len(np.unique(y)) < 2:
        raise ValueError("the random forest needs both cell and background pixels")
    rng = np.random.default_rng(seed)
    if len(y) > MAX_TRAIN_PIXELS:
        keep = rng.choice(len(y), MAX_TRAIN_PIXELS, replace=False)
        x, y = x[keep], y[keep]
    forest = RandomForestClassifier(
        n_estimators=N_TREES, max_depth=MAX_DEPTH, n_jobs=n_jobs, random_state=seed
    )
    forest.fit(x, y)
    return forest, time.process_time() - start


def predict_foreground(forest: RandomForestClassifier, image: np.ndarray) -> np.ndarray:
    """Foreground (cell) probability map ``(Y, X)`` float32."""
    feats = pixel_features(image)
    proba = forest.predict_proba(feats.reshape(-1, feats.shape[-1]))[:, 1]
    return proba.reshape(image.shape[:2]).astype(np.float32)
