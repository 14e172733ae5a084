"""Make the documentation screenshots: the main window, the quick start and every widget.

Run under a virtual display with the xcb platform, e.g.::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py --gif

First, on a fresh window with the real DSB2018 sample, it takes the README's quick start in the
one dock ("U-Net (all steps)"): sample, dock, starting-model segmentation, painting, training
(``docs/screenshot_quick_<n>_<step>.png``), then the main screenshot (``screenshot_main.png``:
the dock beside the sample and its prediction overlay) and, with ``--gif``, the same path with
a click that removes a wrong cell and one that adds a missed cell as ``docs/quick_start.gif``
(``--only quick`` makes only these). Then it opens the synthetic sample data, trains a small
network with the Train widget (which then predicts), predicts again with the Predict widget,
corrects the result with a few clicks in the Annotate widget, draws an elastic deformation and a
weight map, and writes ``docs/screenshot_<widget>.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")

WINDOW_SIZE = (1500, 1000)  # the Train tab shows its loss curve without scrolling


def process_events(seconds: float = 0.2) -> None:
    """Let Qt draw (and deliver worker signals) for about ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Process events until ``condition()`` holds; fail loudly after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.05)


def show_only(viewer, names: list[str]) -> None:
    """Make exactly the named layers visible."""
    for layer in viewer.layers:
        layer.visible = layer.name in names


DOCKS: dict[str, object] = {}


def dock(viewer, widget, name: str, min_width: int = 400):
    """Dock ``widget`` (a QWidget or magicgui widget) as a tab on the right and show it."""
    native = getattr(widget, "native", widget)
    DOCKS[name] = viewer.window.add_dock_widget(widget, name=name, area="right", tabify=True)
    process_events(0.2)  # napari's style sheet is applied: the widget's real minimum width
    # never below the widget's own minimum: a fixed 400 px cut the Predict widget's text off
    native.setMinimumWidth(max(min_width, native.minimumSizeHint().width()))
    raise_dock(name)
    return DOCKS[name]


def raise_dock(name: str) -> None:
    """Bring the tab of a docked widget to the front."""
    process_events(0.2)
    DOCKS[name].raise_()
    process_events(0.2)


def close_notifications() -> None:
    """Close notification pop-ups so that they do not cover the canvas."""
    from qtpy.QtWidgets import QApplication, QWidget

    for top in QApplication.topLevelWidgets():
        for widget in [top, *top.findChildren(QWidget)]:
            if type(widget).__name__ == "NapariQtNotification":
                widget.close()


def save(viewer, out_dir: Path, name: str) -> Path:
    """Screenshot of the whole window (canvas, layer list and docked widgets)."""
    close_notifications()
    process_events(0.5)
    viewer.screenshot(canvas_only=True)  # renders the canvas: a window grab can be a stale frame
    process_events(0.2)
    path = out_dir / f"screenshot_{name}.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def train_and_predict(viewer, out_dir: Path, steps: int) -> None:
    """Train widget: a short training on the painted cells (it predicts the image at the end)."""
    from napari_unet.widgets.train import TrainWidget

    widget = TrainWidget(viewer)
    dock(viewer, widget, "Train U-Net")
    widget.image_combo.setCurrentText("cells")
    widget.labels_combo.setCurrentText("annotation")
    widget.width.setValue(16)
    widget.depth.setValue(3)
    widget.padding.setCurrentText("same")
    widget.length.setValue(steps)
    widget.learning_rate.setValue(3e-3)
    widget.patch_size.setValue(96)
    worker = widget.start_training()
    if worker is None:
        raise RuntimeError("the train widget refused to train (see the notification)")
    wait_for(lambda: widget.run is None, 900, "training and the follow-up prediction")
    show_only(viewer, ["cells", "annotation", "cells instances"])
    viewer.reset_view()
    save(viewer, out_dir, "train")


def predict(viewer, out_dir: Path) -> None:
    """Predict widget: predict the image with the trained model."""
    from napari_unet.widgets.predict import PredictWidget

    widget = PredictWidget(viewer)
    dock(viewer, widget, "Predict")
    widget.image_combo.setCurrentText("cells")
    worker = widget.predict()
    if worker is None:
        raise RuntimeError("the predict widget refused to predict")
    wait_for(lambda: widget.worker is None, 300, "prediction")
    show_only(viewer, ["cells", "cells probability", "cells instances"])
    viewer.layers["cells instances"].contour = 2
    save(viewer, out_dir, "predict")
    viewer.layers["cells instances"].contour = 0


def annotate(viewer, out_dir: Path) -> None:
    """Annotate widget: Ctrl-click accepts predicted cells, a plain click grows a new one."""
    from napari_unet.widgets.annotate import AnnotateWidget

    widget = AnnotateWidget(viewer)
    dock(viewer, widget, "Click to annotate")
    widget._image_combo.value = viewer.layers["cells"]
    layer = widget.new_annotation_layer()
    widget._mode.value = True
    truth = viewer.layers["cells labels"].data
    predicted = viewer.layers["cells instances"].data
    actions = []
    for obj_id in np.unique(predicted[predicted > 0])[:12:2]:  # accept every other prediction
        centre = np.argwhere(predicted == obj_id).mean(axis=0)
        actions.append(widget.handle_click(tuple(centre), ["Control"]))
    added = 0
    for cell_id in np.unique(truth[truth > 0])[::-1]:  # click inside two other isolated cells
        cell = truth == cell_id
        touching = np.unique(truth[ndi.binary_dilation(cell, iterations=3)])
        if added < 2 and touching.size == 2 and not np.any(layer.data[cell]):
            actions.append(widget.handle_click(tuple(np.argwhere(cell).mean(axis=0))))
            added += 1
    print(f"annotate clicks: {actions}, corrections: {widget.corrections}")
    show_only(viewer, ["cells", "cells instances", layer.name])
    viewer.layers["cells instances"].contour = 1
    layer.opacity = 0.8
    viewer.layers.selection.active = layer
    save(viewer, out_dir, "annotate")
    viewer.layers["cells instances"].contour = 0
    live_mode(viewer, widget, out_dir)
    widget._mode.value = False


def live_mode(viewer, widget, out_dir: Path) -> None:
    """Live mode: training on the annotations, the overlay on screen refreshed while it runs."""
    live = widget.start_live()
    if live is None:
        raise RuntimeError("live mode did not start")
    live.refresh_s = 1.0
    show_only(viewer, ["cells", "cells instances", widget._labels_combo.value.name])
    wait_for(lambda: live.overlays >= 2, 180, "two live overlay refreshes")
    save(viewer, out_dir, "live")
    widget.stop_live()
    wait_for(lambda: widget.live is None, 120, "live mode to stop")
    worker = getattr(widget, "predict_worker", None)
    wait_for(lambda: worker is None or not worker.is_running, 120, "the whole-image prediction")


def augment(viewer, out_dir: Path) -> None:
    """Augmentation preview: one elastic deformation of the image and its painted labels."""
    from napari_unet.widgets.augment_preview import AugmentPreviewWidget

    widget = AugmentPreviewWidget(viewer)
    dock(viewer, widget, "Augmentation preview")
    widget._image_combo.value = viewer.layers["cells"]
    widget._labels_combo.value = viewer.layers["cells labels"]
    widget._random_seed.value = False
    widget._seed.value = 7
    widget._sigma.value = 12.0
    out = widget.new_sample()
    if out is None:
        raise RuntimeError("augmentation preview failed")
    show_only(viewer, ["cells", "cells labels", "cells deformed", "cells labels deformed",
                       "cells displacement"])
    viewer.layers["cells labels"].opacity = 0.35
    viewer.layers["cells labels deformed"].opacity = 0.35
    process_events(0.5)
    viewer.reset_view()
    save(viewer, out_dir, "augment")
    viewer.layers["cells labels"].opacity = 0.5
    for name in ("cells deformed", "cells labels deformed", "cells displacement"):
        viewer.layers.remove(name)
    viewer.reset_view()


def weightmap(viewer, out_dir: Path) -> None:
    """Weight-map preview of the complete labels (dense), where cells touch the weight peaks."""
    from napari_unet.widgets.weightmap_preview import WeightMapWidget

    widget = WeightMapWidget(viewer)
    dock(viewer, widget, "Weight map")
    widget._labels_combo.value = viewer.layers["cells labels"]
    widget._dense.value = True
    layer = widget.refresh()
    if layer is None:
        raise RuntimeError("weight map failed")
    show_only(viewer, ["cells labels weights"])
    save(viewer, out_dir, "weightmap")


QUICK_IMAGE = "nuclei (DSB2018)"
GIF_WIDTH = 900  # px: the GIF's frames are downscaled to this width
RING = (255, 221, 0)  # the ring drawn where a GIF frame's step clicks or paints


def _canvas_widget(viewer):
    """The Qt widget of the viewer's canvas (napari has no public way to it)."""
    return viewer.window._qt_viewer.canvas.native


class Frames:
    """Frames of the quick start for ``docs/quick_start.gif``: window grabs with a caption and
    a ring where the step clicks or paints (it does nothing when the GIF is not asked for)."""

    def __init__(self, viewer, enabled: bool) -> None:
        self.viewer, self.enabled = viewer, enabled
        self.frames: list = []
        self.durations: list[int] = []

    def window_xy(self, world_yx) -> tuple[float, float]:
        """Where the world point ``(y, x)`` of the 2D canvas lies in a window grab (x, y px)."""
        from qtpy.QtCore import QPoint

        canvas = _canvas_widget(self.viewer)
        camera = self.viewer.scene.camera
        cy, cx = camera.center[-2:]
        x = (world_yx[1] - cx) * camera.zoom + canvas.width() / 2
        y = (world_yx[0] - cy) * camera.zoom + canvas.height() / 2
        offset = canvas.mapTo(canvas.window(), QPoint(0, 0))  # the window that is grabbed
        return x + offset.x(), y + offset.y()

    def grab(self, caption: str, rings=(), seconds: float = 1.6) -> None:
        """One frame: the window now, with ``rings`` ((y, x) world centre, radius) drawn."""
        if not self.enabled:
            return
        from PIL import Image, ImageDraw, ImageFont

        close_notifications()
        process_events(0.4)
        self.viewer.screenshot(canvas_only=True, flash=False)  # render the canvas first
        process_events(0.1)
        shot = self.viewer.screenshot(canvas_only=False, flash=False)
        image = Image.fromarray(np.ascontiguousarray(np.asarray(shot)[..., :3]))
        ratio = image.width / _canvas_widget(self.viewer).window().width()
        draw = ImageDraw.Draw(image)
        for centre, radius in rings:
            x, y = (ratio * v for v in self.window_xy(centre))
            r = ratio * radius * self.viewer.scene.camera.zoom + 8
            draw.ellipse((x - r, y - r, x + r, y + r), outline=RING, width=5)
        height = round(image.height * GIF_WIDTH / image.width)
        small = image.resize((GIF_WIDTH, height), Image.Resampling.LANCZOS)
        bar = 44
        frame = Image.new("RGB", (GIF_WIDTH, height + bar), (38, 41, 48))
        frame.paste(small, (0, bar))
        font = ImageFont.load_default(size=22)
        ImageDraw.Draw(frame).text((14, bar // 2), caption, fill=(255, 255, 255), font=font,
                                   anchor="lm")
        self.frames.append(frame)
        self.durations.append(int(seconds * 1000))

    def save(self, path: Path) -> None:
        """Write the GIF: one shared palette (no flicker), each frame only where it changed."""
        from PIL import Image

        if not self.frames:
            return
        strip = Image.new("RGB", (GIF_WIDTH, sum(f.height for f in self.frames)))
        top = 0
        for frame in self.frames:
            strip.paste(frame, (0, top))
            top += frame.height
        palette = strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
        frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in self.frames]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=self.durations,
                       loop=0, optimize=True)
        size = path.stat().st_size / 1e6
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"wrote {shown} ({len(frames)} frames, {size:.1f} MB)")


def _paint_disk(layer, centre: tuple[int, int], radius: int, label: int) -> None:
    """Paint a disk into ``layer`` (the whole array is set: a window grab shows it at once)."""
    from skimage.draw import disk

    rr, cc = disk(centre, radius, shape=layer.data.shape)
    data = np.array(layer.data)
    data[rr, cc] = label
    layer.data = data


def _central_nuclei(truth: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Centres of the ``n`` ground-truth nuclei nearest the middle of the image."""
    ids = np.unique(truth)[1:]
    centres = np.array(ndi.center_of_mass(truth > 0, truth, ids))
    middle = np.array(truth.shape) / 2
    nearest = np.argsort(np.linalg.norm(centres - middle, axis=1))[:n]
    return [tuple(int(c) for c in centres[i]) for i in nearest]


def _background_spot(truth: np.ndarray) -> tuple[tuple[int, int], int]:
    """The centre and radius of a disk of background away from the image edges."""
    gap = ndi.distance_transform_edt(truth == 0)
    gap[:, : truth.shape[1] // 4] = gap[:, -truth.shape[1] // 4:] = 0
    gap[:20] = gap[-20:] = 0
    where = np.unravel_index(int(np.argmax(gap)), gap.shape)
    return (int(where[0]), int(where[1])), int(min(12, gap[where] - 2))


def _deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """The point of ``mask`` farthest from its edge (inside even a curved object)."""
    inside = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(inside)), mask.shape))


def _match(obj: np.ndarray, other: np.ndarray) -> float:
    """The best intersection over union of the mask ``obj`` with an object of ``other``."""
    ids = np.unique(other[obj])
    return max((np.sum(obj & (other == i)) / np.sum(obj | (other == i)) for i in ids if i),
               default=0.0)


def _candidates(labels: np.ndarray, other: np.ndarray, min_px: int, margin: int = 40):
    """(match with ``other``, deepest point, mask) of each object of ``labels`` of at least
    ``min_px`` whose deepest point is ``margin`` px inside the image, worst match first."""
    found = []
    for obj_id in np.unique(labels)[1:]:
        obj = labels == obj_id
        point = _deepest_point(obj)
        inside = all(margin <= p < n - margin for p, n in zip(point, obj.shape, strict=True))
        if obj.sum() >= min_px and inside:
            found.append((_match(obj, other), point, obj))
    return sorted(found, key=lambda item: item[0])


def _clicks(annotate, layer, truth: np.ndarray, predicted: np.ndarray):
    """Where to click: on the predicted object that matches no nucleus best (to remove it) and
    in the missed nucleus that a click grows best (to add it); None where there is none."""
    wrong = _candidates(predicted, truth, 120)
    best, missed = 0.0, None
    for score, point, nucleus in _candidates(truth, predicted, 120)[:12]:
        if score > 0.5:
            break
        edit = annotate._edit(layer, point, "add")  # what the click would add, not applied
        if edit is None:
            continue
        grown = np.zeros(truth.shape, bool)
        grown[edit[0]] = edit[1] > 1
        quality = (1 - score) * _match(grown, nucleus.astype(np.int32))
        if quality > best:
            best, missed = quality, point
    return (wrong[0][1] if wrong else None), missed


def quick_start(out_dir: Path, steps: int = 30, gif: bool = False) -> None:
    """The README's quick start on the real sample, in the one dock: a screenshot per step,
    the main screenshot (``screenshot_main.png``) and, with ``gif``, ``quick_start.gif``."""
    import napari

    from napari_unet.demo import DOCK

    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window.resize(*WINDOW_SIZE)
    frames = Frames(viewer, gif)
    viewer.open_sample("napari-unet", "nuclei_dsb2018")  # 1. File > Open Sample
    truth = np.asarray(viewer.layers[-1].data)
    viewer.layers[-1].visible = False  # the ground truth: shown by the sample, hidden here
    process_events(1.0)
    save(viewer, out_dir, "quick_1_sample")
    frames.grab("1. File > Open Sample > Nuclei, fluorescence (DSB2018)")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", DOCK)  # 2. the dock
    process_events(0.5)
    viewer.reset_view()
    save(viewer, out_dir, "quick_2_dock")
    frames.grab("2. Plugins > U-Net segmentation > U-Net (all steps)")
    widget.quick_button.click()  # 3. Segment with the starting model
    wait_for(lambda: widget.predict.worker is None, 300, "the starting model's prediction")
    viewer.layers[f"{QUICK_IMAGE} instances"].contour = 2
    save(viewer, out_dir, "quick_3_segment")
    frames.grab("3. Segment with the starting model: the nuclei appear", seconds=2.2)
    paint_and_train(viewer, widget, truth, out_dir, steps, frames)
    main_window(viewer, widget, out_dir)
    if gif:
        correct_with_clicks(viewer, widget, truth, frames)
        frames.save(out_dir / "quick_start.gif")
    viewer.close()


def paint_and_train(viewer, widget, truth: np.ndarray, out_dir: Path, steps: int,
                    frames: Frames) -> None:
    """4. Data tab: paint two nuclei and some background; 5. Train tab: train ``steps``."""
    widget.show_tab("Data")
    layer = viewer.add_labels(np.zeros(viewer.layers[QUICK_IMAGE].data.shape[:2], np.uint16),
                              name="my labels")
    for n, centre in enumerate(_central_nuclei(truth, 2), start=1):
        _paint_disk(layer, centre, 8, widget.paint.new_cell())
        frames.grab(f"4. Paint: new cell (key N), paint a nucleus ({n} of 2)",
                    rings=[(centre, 8)])
    widget.paint.background()
    where, radius = _background_spot(truth)
    _paint_disk(layer, where, radius, 1)
    process_events(0.5)
    save(viewer, out_dir, "quick_4_paint")
    frames.grab("4. Paint: background (key G), paint some background", rings=[(where, radius)])
    widget.show_tab("Train")  # fine-tunes the starting model, then predicts
    widget.train.labels_combo.setCurrentText("my labels")
    widget.train.image_combo.setCurrentText(QUICK_IMAGE)
    widget.train.length.setValue(steps)
    if widget.train.start_training() is None:
        raise RuntimeError("the train tab refused to train (see the notification)")
    _scroll_to_bottom(widget)  # the progress bar and the live loss curve
    if frames.enabled:
        bar = widget.train.progress_bar  # its value is the step

        wait_for(lambda: widget.train.run is None
                 or (bar.maximum() == steps and bar.value() >= steps // 2),
                 900, "training half done")
        frames.grab("5. Train: the model learns from your strokes (live loss)")
    wait_for(lambda: widget.train.run is None, 900, "training and the follow-up prediction")
    save(viewer, out_dir, "quick_5_train")
    frames.grab("5. Train: done, and the image is predicted again", seconds=2.2)


def main_window(viewer, widget, out_dir: Path) -> None:
    """The main screenshot: the one dock beside the real sample and its prediction overlay."""
    widget.show_tab("Train")
    show_only(viewer, [QUICK_IMAGE, f"{QUICK_IMAGE} instances", "my labels"])
    viewer.layers.selection.active = viewer.layers[f"{QUICK_IMAGE} instances"]
    _scroll_to_bottom(widget)  # the whole loss curve (the tab's top scrolls out a little)
    save(viewer, out_dir, "main")


def _scroll_to_bottom(widget) -> None:
    """Scroll the dock's current tab to its end."""
    process_events(0.3)
    bar = widget.tabs.currentWidget().verticalScrollBar()
    bar.setValue(bar.maximum())
    process_events(0.3)


def correct_with_clicks(viewer, widget, truth: np.ndarray, frames: Frames) -> None:
    """6. Correct tab: a Shift-click removes a wrong cell, a click adds a missed one."""
    annotate = widget.annotate
    widget.show_tab("Correct")
    instances = viewer.layers[f"{QUICK_IMAGE} instances"]
    annotate._image_combo.value = viewer.layers[QUICK_IMAGE]
    annotate._pred_combo.value = instances
    layer = annotate.new_annotation_layer()  # "New empty": 1 shows grey, as in the Data tab
    if layer is None:
        raise RuntimeError("the Correct tab made no annotation layer")
    annotate._mode.value = True
    show_only(viewer, [QUICK_IMAGE, instances.name, layer.name])
    layer.opacity = 0.8
    wrong, missed = _clicks(annotate, layer, truth, np.asarray(instances.data))
    points = [p for p in (wrong, missed) if p is not None]
    camera, canvas = viewer.scene.camera, _canvas_widget(viewer)
    half_view = np.array([canvas.height(), canvas.width()]) / camera.zoom / 4  # at 2x zoom
    if points and np.all(np.ptp(points, axis=0) / 2 + 25 < half_view):
        camera.center = tuple(float(v) for v in np.mean(points, axis=0))  # 2x on the clicks
        camera.zoom = camera.zoom * 2
    frames.grab("6. Correct tab: New empty, then annotation mode (zoomed in)")
    if wrong is not None and annotate.handle_click(wrong, ["Shift"]) is not None:
        frames.grab("6. Correct: Shift-click removes a wrong cell (grey: background)",
                    rings=[(wrong, 12)], seconds=2.2)
    if missed is not None and annotate.handle_click(missed) is not None:
        frames.grab("6. Correct: a click adds a missed nucleus; then Retrain",
                    rings=[(missed, 12)], seconds=3.5)
    annotate._mode.value = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder")
    parser.add_argument("--steps", type=int, default=150, help="training steps (CPU: keep small)")
    parser.add_argument("--only", choices=["quick", "widgets"], default=None,
                        help="make only the quick-start or only the widget screenshots")
    parser.add_argument("--gif", action="store_true",
                        help="also make docs/quick_start.gif: the quick start, frame by frame")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    import torch

    from napari_unet._sample_data import synthetic_cells, synthetic_cells_sparse

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.only != "widgets":
        quick_start(args.out, gif=args.gif)
    if args.only == "quick":
        return 0
    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window.resize(*WINDOW_SIZE)
    (truth, truth_kw, _), = [item for item in synthetic_cells() if item[2] == "labels"]
    for data, kwargs, kind in synthetic_cells_sparse():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.add_labels(truth, name="cells labels", visible=False, opacity=0.5)
    viewer.layers.move(viewer.layers.index("cells labels"), 1)
    process_events(1.0)

    train_and_predict(viewer, args.out, args.steps)
    predict(viewer, args.out)
    annotate(viewer, args.out)
    augment(viewer, args.out)
    weightmap(viewer, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
