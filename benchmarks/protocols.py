"""Data protocols for the segmentation-quality benchmark on DSB2018 nuclei (fluorescence).

The mission's scenario is "a user labels a few cells": :func:`few_cells_annotation` keeps ``N``
nuclei of one training image as cells (ids >= 2) and marks background (label 1) only where a
user would plausibly paint it: a ring just outside each kept nucleus and a few disc strokes far
from any nucleus.  Everything else stays 0 (unlabeled).  :func:`full_annotation` is the other
end: a completely labeled image (dense mode, 0 = background).

The ``color`` domain (H&E and brightfield, read as grayscale) is one the shipped starting model
never saw (it was trained on ``train/fluo`` only; its nuclei are dark on a bright background).
Fine-tuning is for such data, so this domain measures whether it can still learn.

The data is read from ``../shared/data/dsb2018`` (relative to the project root) and never
copied into the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.io import imread

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = PROJECT_ROOT / ".." / "shared" / "data" / "dsb2018"

# The "few cells" image: 520x696 fluorescence, 123 nuclei of medium size (median area ~715 px,
# a few touching), the middle of the scale range of the validation set (~150 px to ~1800 px).
FEW_CELLS_IMAGE = "53ad09e4348767be"
# The "full images" protocols: the few-cells image, then two images of the other common kinds
# (256x256 with small nuclei, 360x360 with large nuclei), completely labeled.
FULL_IMAGES = (
    FEW_CELLS_IMAGE,
    "54cb3328e778d87f",  # 256x256, 36 small nuclei (median area ~110 px)
    "b6edad733399c83c",  # 360x360, 25 large nuclei (median area ~1070 px)
)
# The same roles in the ``color`` domain (all 256x320 RGB).
COLOR_FEW_CELLS_IMAGE = "a31deaf0ac279d5f"  # 87 nuclei, median area ~390 px
COLOR_FULL_IMAGES = (
    COLOR_FEW_CELLS_IMAGE,
    "cbca32daaae36a87",  # 112 small nuclei (median area ~190 px)
    "709e094e39629a9c",  # 22 large nuclei (median area ~1150 px)
)
# Per domain: (the few-cells image, the full-K images).
TRAINING_IMAGES = {
    "fluo": (FEW_CELLS_IMAGE, FULL_IMAGES),
    "color": (COLOR_FEW_CELLS_IMAGE, COLOR_FULL_IMAGES),
}
DOMAINS = tuple(TRAINING_IMAGES)
FEW_CELLS_COUNTS = (5, 10, 20)
RING_PX = (3, 8)
N_STROKES = 6
STROKE_RADIUS = 8


@dataclass(frozen=True)
class Sample:
    """One image with its instance labels (0 = background, ids >= 1 = nuclei)."""

    name: str
    image: np.ndarray
    labels: np.ndarray


def data_dir(split: str, kind: str = "fluo", root: Path | None = None) -> Path:
    """Folder ``<root>/<split>/<kind>`` with ``images/`` and ``labels/``; checks that it exists."""
    folder = (root or DATA_ROOT) / split / kind
    if not (folder / "images").is_dir():
        raise ValueError(
            f"no DSB2018 data at {folder}: expected {{train,val}}/{{fluo,color}}/images "
            "under ../shared/data/dsb2018"
        )
    return folder


def list_names(split: str, kind: str = "fluo", root: Path | None = None) -> list[str]:
    """Sorted image ids of one split."""
    return sorted(p.stem for p in (data_dir(split, kind, root) / "images").glob("*.png"))


def load_sample(name: str, split: str, kind: str = "fluo", root: Path | None = None) -> Sample:
    """Read one 2D image and its uint16 instance labels (``color`` images as grayscale).

    The starting model has one input channel, so an RGB image becomes its luminance
    (ITU-R 601 weights), as a user would open an H&E image as grayscale.
    """
    folder = data_dir(split, kind, root)
    image = imread(folder / "images" / f"{name}.png")
    labels = imread(folder / "labels" / f"{name}.png").astype(np.int32)
    if image.ndim == 3 and kind == "fluo":
        image = image[..., 0]
    elif image.ndim == 3:
        rgb = image[..., :3].astype(np.float32)
        image = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    return Sample(name, image, labels)


def validation_set(
    max_n: int | None = None, split: str = "val", root: Path | None = None, kind: str = "fluo"
) -> list[Sample]:
    """The validation images; with ``max_n``, a fixed random subset (seed 0, sorted by id).

    The subset does not depend on the training seed, so runs with different seeds are scored
    on the same images.
    """
    names = list_names(split, kind, root=root)
    if max_n is not None and max_n < len(names):
        rng = np.random.default_rng(0)
        names = sorted(rng.choice(names, size=max_n, replace=False).tolist())
    return [load_sample(n, split, kind, root=root) for n in names]


def _interior_ids(labels: np.ndarray, margin: int) -> np.ndarray:
    """Ids of nuclei that stay ``margin`` px away from the image border (a user sees them whole)."""
    inner = np.zeros(labels.shape, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    ids = np.unique(labels[labels > 0])
    touching = np.unique(labels[(labels > 0) & ~inner])
    return np.setdiff1d(ids, touching)


def _far_points(free: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``k`` well-spread points inside ``free`` (greedy farthest-point from a random start)."""
    coords = np.argwhere(free)
    if coords.size == 0:
        return []
    picked = [coords[rng.integers(len(coords))]]
    dist = np.full(len(coords), np.inf)
    for _ in range(k - 1):
        dist = np.minimum(dist, np.hypot(*(coords - picked[-1]).T))
        if dist.max() <= 0:
            break
        picked.append(coords[int(np.argmax(dist))])
    return [tuple(int(v) for v in p) for p in picked]


def few_cells_annotation(
    labels: np.ndarray,
    n_cells: int,
    seed: int = 0,
    ring: tuple[int, int] = RING_PX,
    n_strokes: int = N_STROKES,
    stroke_radius: int = STROKE_RADIUS,
) -> np.ndarray:
    """Sparse labels a user could paint: ``n_cells`` nuclei plus plausible background.

    Cells get ids ``2..n_cells+1`` (nested: the first 5 of the 10 are the 5-cell set for the
    same seed).  Background (1) is a band ``ring[0]..ring[1]`` px outside each kept nucleus,
    minus any nucleus (dilated by 1 px), plus ``n_strokes`` discs of radius ``stroke_radius``
    at well-spread points at least ``2 * stroke_radius`` px from any nucleus.
    """
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    rng = np.random.default_rng(seed)
    candidates = _interior_ids(labels, ring[1] + 1)
    if len(candidates) < n_cells:
        raise ValueError(f"only {len(candidates)} whole nuclei, cannot keep {n_cells}")
    kept = rng.permutation(candidates)[:n_cells]
    out = np.zeros(labels.shape, dtype=np.int32)
    kept_mask = np.isin(labels, kept)
    dist_to_kept = ndi.distance_transform_edt(~kept_mask)
    any_nucleus = ndi.binary_dilation(labels > 0, iterations=1)
    band = (dist_to_kept > ring[0]) & (dist_to_kept <= ring[1]) & ~any_nucleus
    out[band] = 1
    dist_to_any = ndi.distance_transform_edt(labels == 0)
    free = dist_to_any >= 2 * stroke_radius
    if not free.any():
        free = dist_to_any >= max(dist_to_any.max() / 2, 1)
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    for y, x in _far_points(free, n_strokes, rng):
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= stroke_radius**2
        out[disc & (labels == 0)] = 1
    for new_id, old_id in enumerate(kept, start=2):
        out[labels == old_id] = new_id
    return out


def full_annotation(labels: np.ndarray) -> np.ndarray:
    """Dense labels: the complete instance image (0 = background), for ``dense=True``."""
    return labels.astype(np.int32)


def percentile_normalize(image: np.ndarray, lo: float = 1.0, hi: float = 99.8) -> np.ndarray:
    """Scale an image to about [0, 1] by its percentiles (used for the random forest)."""
    img = image.astype(np.float32)
    p_lo, p_hi = np.percentile(img, [lo, hi])
    return (img - p_lo) / max(float(p_hi - p_lo), 1e-6)
