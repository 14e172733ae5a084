"""A probability threshold that undoes the class balancing of the training loss.

The loss weighs each class so that both carry the same total weight in a patch (the U-Net
paper's ``w_c``).  A network trained that way estimates the posterior under balanced classes,
so its probability ``p`` overstates the rarer class.  Bayes' rule moves it back to the image's
own class priors ``pi`` (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a
classifier to new a priori probabilities")::

    p / (1 - p) = q / (1 - q) * (S_cell / S_bg) * (pi_bg / pi_cell)

with ``S`` the class-balance weight mass each class had in training.  A pixel is a cell when its
prior-corrected posterior ``q`` exceeds 1/2, i.e. when ``p`` exceeds

    t = R / (1 + R),  R = (S_cell / S_bg) * (pi_bg / pi_cell).

For nuclei (cells a minority) ``t`` is high, for EM cell interiors (membranes the minority) low.
The border term of the weight map is left out of ``S`` on purpose: it is meant to bias the
network towards separating touching cells, and that bias is kept.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ClassMass", "calibrated_threshold"]

# The calibrated threshold is kept within these bounds (a guard against one-class labels).
THRESHOLD_RANGE = (0.05, 0.95)


class ClassMass:
    """Running class-balance weight mass ``S_bg, S_cell`` of the training batches."""

    def __init__(self) -> None:
        self.mass = np.zeros(2, dtype=np.float64)

    def add(self, target: torch.Tensor, weights: torch.Tensor) -> None:
        """Add one batch (``target`` 0/1 and ``weights`` of shape ``(N, H, W)``).

        Per patch, as ``weights.class_balance_weights`` does it: both classes present -> each
        gets half of the labeled pixels' mass; one class -> it gets all of it.
        """
        labeled = (weights > 0).flatten(1)
        cells = ((target > 0).flatten(1) & labeled).sum(1).cpu().numpy()
        total = labeled.sum(1).cpu().numpy()
        both = (cells > 0) & (cells < total)
        self.mass[0] += float(np.where(both, total / 2, np.where(cells == 0, total, 0)).sum())
        self.mass[1] += float(np.where(both, total / 2, np.where(cells > 0, total, 0)).sum())


def calibrated_threshold(mass: np.ndarray, cell_prior: float) -> float | None:
    """``t = R / (1 + R)`` (module docstring) for ``mass = (S_bg, S_cell)``; None if undefined."""
    s_bg, s_cell = (float(v) for v in mass)
    if s_bg <= 0 or s_cell <= 0 or not 0.0 < cell_prior < 1.0:
        return None
    ratio = (s_cell / s_bg) * ((1.0 - cell_prior) / cell_prior)
    low, high = THRESHOLD_RANGE
    return float(np.clip(ratio / (1.0 + ratio), low, high))
