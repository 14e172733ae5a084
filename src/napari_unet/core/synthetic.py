"""Synthetic fluorescence-like cell images with instance labels.

Used for the plugin's sample data, the demo and the tests, so that nothing is downloaded.
Cells are filled ellipses of varied size, orientation and brightness, some of them touching,
blurred like a widefield image, over an uneven background with shot and read noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .labels import BACKGROUND_LABEL


def make_cells(
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 20,
    seed: int | None = 0,
    *,
    radius: tuple[float, float] = (7.0, 13.0),
    touching: float = 0.3,
    noise: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image, labels)``: float32 image in [0, 1], int32 instance labels (0 = background).

    ``touching`` is the fraction of cells placed right next to an existing cell, so that the
    separation of touching cells (the point of the U-Net border weights) is exercised.
    """
    if len(shape) != 2 or min(shape) < 16:
        raise ValueError(f"shape must be 2D and at least 16x16, got {shape}")
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    rng = np.random.default_rng(seed)
    height, width = shape
    labels = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    brightness = np.zeros(shape, dtype=np.float32)
    centres: list[tuple[float, float, float]] = []
    placed = 0
    for _ in range(n_cells * 40):
        if placed >= n_cells:
            break
        r_major = rng.uniform(*radius)
        r_minor = r_major * rng.uniform(0.65, 1.0)
        if centres and rng.random() < touching:
            cy, cx, cr = centres[rng.integers(len(centres))]
            angle = rng.uniform(0, 2 * np.pi)
            dist = cr + r_minor * 0.95
            y0, x0 = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
        else:
            y0, x0 = rng.uniform(r_major, height - r_major), rng.uniform(r_major, width - r_major)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - y0, xx - x0
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / r_major
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / r_minor
        inside = u * u + v * v <= 1.0
        n_inside = int(inside.sum())
        if n_inside < 20 or (labels[inside] > 0).mean() > 0.02:
            continue
        inside &= labels == 0
        placed += 1
        labels[inside] = placed
        texture = 1.0 + 0.15 * np.cos(3 * u[inside] + rng.uniform(0, 6)) * np.sin(2 * v[inside])
        brightness[inside] = rng.uniform(0.45, 1.0) * texture
        centres.append((y0, x0, r_major))
    image = ndi.gaussian_filter(brightness, 1.2)
    gradient = 0.08 + 0.06 * (xx / width) + 0.04 * np.sin(yy / height * np.pi)
    image = image + gradient
    image = rng.poisson(image * 200.0).astype(np.float32) / 200.0
    image += rng.normal(0.0, noise, shape).astype(np.float32)
    image = np.clip(image, 0.0, None)
    image /= max(float(image.max()), 1e-6)
    return image.astype(np.float32), labels


def sparse_annotation(
    labels: np.ndarray,
    n_cells: int = 5,
    seed: int | None = 0,
    *,
    ring: int = 4,
    background_blobs: int = 3,
    blob_radius: int = 10,
) -> np.ndarray:
    """Simulate a user's few strokes: keep ``n_cells`` cells and paint background around them.

    Returns labels in the sparse convention (0 = unlabeled, 1 = background, >= 2 = cells):
    a ring of background ``ring`` px wide around each kept cell (never on another cell) and a
    few background discs away from all cells, as a user would paint them.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids = np.unique(labels[labels > 0])
    keep = rng.choice(ids, size=min(n_cells, ids.size), replace=False) if ids.size else ids
    sparse = np.zeros(labels.shape, dtype=np.int32)
    kept = np.isin(labels, keep)
    near = ndi.binary_dilation(kept, iterations=ring) & (labels == 0)
    sparse[near] = BACKGROUND_LABEL
    for new_id, old_id in enumerate(keep, start=BACKGROUND_LABEL + 1):
        sparse[labels == old_id] = new_id
    far = ndi.distance_transform_edt(labels == 0) > blob_radius
    candidates = np.argwhere(far)
    yy, xx = np.ogrid[: labels.shape[0], : labels.shape[1]]
    for _ in range(background_blobs if candidates.size else 0):
        cy, cx = candidates[rng.integers(len(candidates))]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= blob_radius**2
        sparse[disc & (labels == 0) & (sparse == 0)] = BACKGROUND_LABEL
    return sparse


def disc_grid(shape: tuple[int, int], radius: int, spacing: int, offset: int = 0) -> np.ndarray:
    """Labels of discs of ``radius`` px on a grid of ``spacing`` px (rows shifted by
    ``offset``): objects of one known size, for tests of the object scale."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    k = 0
    for cy in range(spacing // 2 + offset, shape[0] - radius, spacing):
        for cx in range(spacing // 2, shape[1] - radius, spacing):
            k += 1
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return labels
