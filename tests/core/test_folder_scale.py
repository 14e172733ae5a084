"""A folder's object scale: estimated once for alike files, again when the objects change."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core import scaleout, segment
from napari_unet.core.folder_scale import FolderScale
from napari_unet.core.io import read_image, write_array
from napari_unet.core.model import UNet
from napari_unet.core.synthetic import disc_grid


@pytest.fixture
def estimates(monkeypatch):
    """How many times the five-scale size search runs."""
    calls = []
    real = segment.estimate_diameter

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(segment, "estimate_diameter", counted)
    return calls


def _image(radius, offset=0):
    return (disc_grid((400, 400), radius, 4 * radius, offset) > 0).astype(np.float32)


def test_alike_files_reuse_the_first_estimate_and_predict_the_same(identity, estimates):
    model = UNet(depth=1, base_channels=4)
    folder = FolderScale()
    for offset in (0, 5, 11):
        image = _image(22, offset)
        fg, _, factor = folder.predict(model, image)
        ref_fg, _, ref_factor = segment.predict_maps(model, image, diameter="auto")
        assert factor == pytest.approx(ref_factor, rel=1e-6)
        np.testing.assert_allclose(fg, ref_fg, atol=1e-6)
    assert folder.estimates == 1
    assert len(estimates) == 1 + 3  # the folder's one, and the three per-file references


@pytest.mark.parametrize("radius", [6, 60])
def test_a_file_with_other_sized_objects_gets_its_own_estimate(identity, radius):
    model = UNet(depth=1, base_channels=4)
    folder = FolderScale()
    folder.predict(model, _image(22))
    first = folder.factor
    image = (disc_grid((900, 900), radius, 4 * radius) > 0).astype(np.float32)
    _, _, factor = folder.predict(model, image)
    assert folder.estimates == 2
    assert factor == pytest.approx(segment.predict_maps(model, image, diameter="auto")[2])
    assert factor != pytest.approx(first, rel=0.3)


def test_no_objects_at_the_folder_scale_means_a_new_estimate(identity):
    folder = FolderScale()
    folder.predict(UNet(depth=1, base_channels=4), _image(22))
    assert not folder.fits(None, 0.0)
    assert not folder.fits(folder.size * 1.4, folder.ambiguity)
    assert not folder.fits(folder.size, 3 * folder.ambiguity + 0.1)
    assert folder.fits(folder.size * 1.1, folder.ambiguity)


@pytest.mark.parametrize("pipeline", [True, False])
def test_predict_files_estimates_once_for_a_folder_of_alike_images(
    tmp_path, identity, estimates, pipeline
):
    model = UNet(depth=1, base_channels=4)
    paths = []
    for i, offset in enumerate((0, 7, 13)):
        paths.append(tmp_path / "in" / f"img{i}.tif")
        write_array(paths[-1], (_image(22, offset) * 1000).astype(np.uint16))
    outs = scaleout.predict_files(model, paths, tmp_path / "out", diameter="auto",
                                  device="cpu", pipeline=pipeline)
    assert len(estimates) == 1
    for p, o in zip(paths, outs, strict=True):
        ref = scaleout.predict_file(model, p, tmp_path / "ref" / p.name, diameter="auto",
                                    device="cpu")
        np.testing.assert_array_equal(read_image(o), read_image(ref))
        assert read_image(o).max() > 10
