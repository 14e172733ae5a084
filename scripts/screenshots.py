"""Make the documentation screenshots: every widget after a real interaction, and the main window.

Run under a virtual display with the xcb platform, e.g.::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

It opens napari with the synthetic sample data, trains a small network for a few steps with the
Train widget (which then predicts), predicts again with the Predict widget, corrects the result
with a few clicks in the Annotate widget, draws an elastic deformation and a weight map, and
writes ``docs/screenshot_<widget>.png`` and ``docs/screenshot_main.png``. First, on a fresh
window with the real DSB2018 sample, it takes the README's quick start in the one dock: sample,
dock, starting-model segmentation, painting, training (``docs/screenshot_quick_<n>_<step>.png``;
``--only quick`` makes only these).
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

WINDOW_SIZE = (1500, 950)


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
    native.setMinimumWidth(min_width)
    DOCKS[name] = viewer.window.add_dock_widget(widget, name=name, area="right", tabify=True)
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


def main_window(viewer, out_dir: Path) -> None:
    """All five widgets docked as tabs beside the image, the prediction and the annotations."""
    raise_dock("Train U-Net")
    show_only(viewer, ["cells", "cells instances", "cells annotations"])
    viewer.layers["cells instances"].contour = 1
    viewer.layers.selection.active = viewer.layers["cells annotations"]
    process_events(0.5)
    viewer.reset_view()
    save(viewer, out_dir, "main")


QUICK_IMAGE = "nuclei (DSB2018)"


def _paint_disk(layer, centre: tuple[int, int], radius: int, label: int) -> None:
    """Paint a disk into ``layer`` (the whole array is set: a window grab shows it at once)."""
    from skimage.draw import disk

    rr, cc = disk(centre, radius, shape=layer.data.shape)
    data = np.array(layer.data)
    data[rr, cc] = label
    layer.data = data


def quick_start(out_dir: Path, steps: int = 10) -> None:
    """The README's quick start on the real sample: five steps, one screenshot each."""
    import napari

    from napari_unet.demo import DOCK

    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window.resize(*WINDOW_SIZE)
    viewer.open_sample("napari-unet", "nuclei_dsb2018")  # 1. File > Open Sample
    viewer.layers[-1].visible = False  # the ground truth: shown by the sample, hidden here
    process_events(1.0)
    save(viewer, out_dir, "quick_1_sample")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", DOCK)  # 2. the dock
    process_events(0.5)
    viewer.reset_view()
    save(viewer, out_dir, "quick_2_dock")
    widget.quick_button.click()  # 3. Segment with the starting model
    wait_for(lambda: widget.predict.worker is None, 300, "the starting model's prediction")
    viewer.layers[f"{QUICK_IMAGE} instances"].contour = 2
    save(viewer, out_dir, "quick_3_segment")
    widget.show_tab("Data")  # 4. paint two cells and some background
    layer = viewer.add_labels(np.zeros(viewer.layers[QUICK_IMAGE].data.shape[:2], np.uint16),
                              name="my labels")
    truth = np.asarray(viewer.layers["nuclei ground truth (complete labels)"].data)
    ids = np.unique(truth)[1:]
    centres = np.array(ndi.center_of_mass(truth > 0, truth, ids))
    middle = np.array(truth.shape) / 2
    for i in np.argsort(np.linalg.norm(centres - middle, axis=1))[:2]:  # two central nuclei
        _paint_disk(layer, tuple(int(c) for c in centres[i]), 8, widget.paint.new_cell())
    widget.paint.background()
    gap = ndi.distance_transform_edt(truth == 0)
    gap[:, : truth.shape[1] // 4] = gap[:, -truth.shape[1] // 4:] = 0  # away from the edges
    gap[:20] = gap[-20:] = 0
    where = np.unravel_index(int(np.argmax(gap)), gap.shape)
    _paint_disk(layer, where, int(min(12, gap[where] - 2)), 1)
    process_events(0.5)
    save(viewer, out_dir, "quick_4_paint")
    widget.show_tab("Train")  # 5. Train (fine-tunes the starting model, then predicts)
    widget.train.labels_combo.setCurrentText("my labels")
    widget.train.image_combo.setCurrentText(QUICK_IMAGE)
    widget.train.length.setValue(steps)
    if widget.train.start_training() is None:
        raise RuntimeError("the train tab refused to train (see the notification)")
    wait_for(lambda: widget.train.run is None, 900, "training and the follow-up prediction")
    save(viewer, out_dir, "quick_5_train")
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder")
    parser.add_argument("--steps", type=int, default=150, help="training steps (CPU: keep small)")
    parser.add_argument("--only", choices=["quick", "widgets"], default=None,
                        help="make only the quick-start or only the widget screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    import torch

    from napari_unet._sample_data import synthetic_cells, synthetic_cells_sparse

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.only != "widgets":
        quick_start(args.out)
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
    main_window(viewer, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
