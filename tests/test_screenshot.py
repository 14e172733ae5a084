"""A layer really renders: a screenshot of a shown viewer is not black and shows the cells."""

import numpy as np


def test_screenshot_shows_the_image(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    image = np.zeros((64, 64), dtype=np.float32)
    image[16:48, 16:48] = 1.0
    viewer.add_image(image, colormap="gray", contrast_limits=(0, 1))
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    gray = shot[..., :3].astype(float).mean(axis=-1)
    assert gray.max() > 200, "the canvas rendered black"
    height, width = gray.shape
    centre = gray[height // 2 - 5 : height // 2 + 5, width // 2 - 5 : width // 2 + 5]
    corner = gray[:5, :5]
    assert centre.mean() > 200 and corner.mean() < 50


def test_labels_render_in_colour(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[10:30, 10:30] = 1
    labels[34:54, 34:54] = 2
    viewer.add_labels(labels)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    colours = {tuple(pixel) for pixel in shot.reshape(-1, 3)[::97]}
    assert len(colours) >= 3  # background and two distinct label colours
