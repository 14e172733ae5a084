"""One object scale for a folder of images: estimated on a file, checked on each next one.

``diameter="auto"`` estimates the objects' size in an image by predicting a crop of it at
five scales (:func:`.segment.estimate_diameter`), which costs more than predicting the image
itself.  The files of one folder usually come from one experiment at one magnification, so a
:class:`FolderScale` predicts each next file at the scale found for the last estimated one
and runs the estimate again only when the objects found there differ from that file's: in
median size (by more than ``SIZE_TOLERANCE``) or in how much of the probability is undecided
(a network shown objects larger than it knows breaks them into pieces of its own size with
undecided interiors, so the size alone could pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .segment import auto_factor, model_threshold, predict_maps, scale_fingerprint

__all__ = ["AMBIGUITY_TOLERANCE", "SIZE_TOLERANCE", "FolderScale"]

#: a file's objects within this factor of the estimated file's size keep its scale
SIZE_TOLERANCE = 1.25
#: ... and an ambiguity at most this many times the estimated file's (plus 0.05)
AMBIGUITY_TOLERANCE = 1.5

Maps = tuple[np.ndarray, "np.ndarray | None", float]


@dataclass
class FolderScale:
    """The object scale shared by the files of one folder (``diameter="auto"``)."""

    factor: float | None = None
    size: float | None = None  # median object diameter at the network's scale
    ambiguity: float = 0.0
    estimates: int = 0  # files whose scale was estimated (the others reused it)

    def predict(self, model: Any, image: np.ndarray, **kw: Any) -> Maps:
        """:func:`.segment.predict_maps` of ``image`` at the folder's scale, estimated when
        it has none yet or when the objects found at it differ from the estimated file's."""
        threshold = model_threshold(model)
        maps = None
        if self.factor is not None:
            maps = predict_maps(model, image, factor=self.factor, **kw)
            if self.fits(*scale_fingerprint(maps[0], threshold, self.factor)):
                return maps
        search = {k: v for k, v in kw.items() if k not in ("progress", "cancel")}
        factor = auto_factor(model, image, **search)
        if maps is None or factor != self.factor:  # the same scale again: keep its maps
            maps = predict_maps(model, image, factor=factor, **kw)
        self.factor = factor
        self.size, self.ambiguity = scale_fingerprint(maps[0], threshold, factor)
        self.estimates += 1
        return maps

    def fits(self, size: float | None, ambiguity: float) -> bool:
        """Whether objects of ``size`` and ``ambiguity`` (at the folder's scale) are the same
        kind as the estimated file's."""
        if size is None or self.size is None:
            return False
        return (abs(float(np.log(size / self.size))) <= np.log(SIZE_TOLERANCE)
                and ambiguity <= AMBIGUITY_TOLERANCE * self.ambiguity + 0.05)
