"""GUI responsiveness while the TrainWidget trains: longest gap between 10 ms timer ticks.

Opens a napari viewer with synthetic cells, starts a training run through the TrainWidget
(time budget ``--seconds``) and records, with a 10 ms QTimer in the GUI thread, the gaps
between ticks. A gap much longer than 10 ms is a moment where the GUI froze. Goal: max < 100 ms.

    xvfb-run -a .venv/bin/python benchmarks/bench_responsiveness.py [--seconds 25] [--threads 1]

``--live``: the Annotate widget's Live mode instead, with the shipped model on a ``--size``
image while a scripted user paints a cell every 1.5 s; it also reports how long an edit takes
to enter training and how often the overlay on screen refreshes (goal: at most every 5 s).
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the training worker (default: cores - 1)")
    parser.add_argument("--size", type=int, default=256, help="synthetic image side")
    parser.add_argument("--depth", type=int, default=None, help="model depth (default config)")
    parser.add_argument("--width", type=int, default=None, help="base channels (default config)")
    parser.add_argument("--nice", type=int, default=None,
                        help="niceness added to the training thread (default: the widget's)")
    parser.add_argument("--live", action="store_true", help="measure Live mode instead")
    args = parser.parse_args()
    if args.live:
        run_live(args)
        return

    torch.set_num_threads(2)
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_unet.core.synthetic import make_cells
    from napari_unet.widgets import _training_run
    from napari_unet.widgets import train as train_mod

    if args.threads is not None:
        train_mod.worker_threads = lambda: args.threads
    if args.nice is not None:
        _training_run.WORKER_NICE = args.nice

    viewer = napari.Viewer(show=True)
    image, labels = make_cells((args.size, args.size), n_cells=25, seed=0)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cell labels")
    widget = train_mod.TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train U-Net")
    if args.depth:
        widget.depth.setValue(args.depth)
    if args.width:
        widget.width.setValue(args.width)
    widget.dense.setChecked(True)
    widget.device_combo.setCurrentText("cpu")
    widget.length_unit.setCurrentText("minutes")
    widget.minutes.setValue(args.seconds / 60.0)

    gc_callback, gc_pauses = _gc_recorder()
    gc.callbacks.append(gc_callback)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    state = {"t0": 0.0, "t1": 0.0}

    worker = widget.start_training(start=False)
    if worker is None:
        raise SystemExit("training did not start (see the notification)")

    def started() -> None:
        state["t0"] = time.perf_counter()
        timer.start()

    def finished() -> None:
        state["t1"] = time.perf_counter()
        timer.stop()

    worker.started.connect(started)
    worker.finished.connect(finished)
    loop = QEventLoop()
    check = QTimer()
    check.timeout.connect(lambda: None if widget.busy else loop.quit())
    check.start(50)
    worker.start()
    loop.exec_()  # the real Qt event loop, as in napari; ends when training + prediction end
    check.stop()

    _report(args, widget, ticks, state, gc_pauses)
    gc.callbacks.remove(gc_callback)
    viewer.close()


def _gc_recorder():
    """A ``gc.callbacks`` entry recording collections over 20 ms, and the list it fills."""
    gc_pauses: list[tuple[float, float, int, str]] = []  # (start, ms, generation, thread)
    gc_start: dict[int, float] = {}

    def gc_callback(phase: str, info: dict) -> None:
        tid = threading.get_ident()
        if phase == "start":
            gc_start[tid] = time.perf_counter()
        elif tid in gc_start:
            t = gc_start.pop(tid)
            ms = (time.perf_counter() - t) * 1000
            if ms > 20:
                gc_pauses.append((t, ms, info["generation"], threading.current_thread().name))

    return gc_callback, gc_pauses


def _report(args: argparse.Namespace, widget, ticks: list[float], state: dict,
            gc_pauses: list) -> None:
    """Print the training run's timer gaps and garbage-collection pauses."""
    from napari_unet.widgets import _training_run
    from napari_unet.widgets import train as train_mod

    gaps_ms = np.diff(np.array(ticks)) * 1000.0
    steps = widget.loss_plot.steps[-1] if widget.loss_plot.steps else 0
    threads = args.threads if args.threads is not None else train_mod.worker_threads()
    print(f"cpu cores: {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, worker torch "
          f"threads: {threads}, worker nice +{_training_run.WORKER_NICE}, "
          f"image {args.size}x{args.size}, model {widget.session.describe()}")
    print(f"training: {steps} steps in {state['t1'] - state['t0']:.1f} s, "
          f"final loss {widget.loss_plot.values[-1]:.4f}" if steps else "training: no steps")
    if gaps_ms.size:
        print(f"timer gaps over {gaps_ms.size} ticks: max {gaps_ms.max():.1f} ms, "
              f"p99 {np.percentile(gaps_ms, 99):.1f} ms, mean {gaps_ms.mean():.1f} ms "
              f"(goal: max < 100 ms)")
        worst = np.argsort(gaps_ms)[::-1][:5]
        print("longest gaps (ms @ s after start): " + ", ".join(
            f"{gaps_ms[i]:.0f} @ {ticks[i] - state['t0']:.1f}" for i in sorted(worst)))
    pauses = [f"{ms:.0f} ms gen{gen} in {name} @ {t - state['t0']:.1f}"
              for t, ms, gen, name in gc_pauses if state["t0"] <= t <= state["t1"]]
    print("garbage collections > 20 ms during training: " + (", ".join(pauses) or "none"))


def run_live(args: argparse.Namespace) -> None:
    """Live mode: timer gaps, edit-to-training latency and overlay refresh intervals."""
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_unet.core.synthetic import make_cells
    from napari_unet.models import load_pretrained
    from napari_unet.widgets import _training_run
    from napari_unet.widgets._session import get_session
    from napari_unet.widgets.annotate import AnnotateWidget

    if args.threads is not None:
        _training_run.worker_threads = lambda: args.threads
    viewer = napari.Viewer(show=True)
    image, truth = make_cells((args.size, args.size), n_cells=args.size // 8, seed=0)
    viewer.add_image(image, name="cells")
    get_session(viewer).set_model(load_pretrained(), "starting model")
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    layer = widget.new_annotation_layer()
    layer.data[:8, :8] = 1
    live = widget.start_live(start_thread=False)
    ids = [i for i in np.unique(truth) if i > 0]
    ticks: list[float] = []
    edits: list[float] = []
    entered: list[float] = []
    overlays: list[float] = []
    seen = {"corrections": 0, "overlays": 0}

    def tick() -> None:
        now = time.perf_counter()
        ticks.append(now)
        if live.trainer.corrections > seen["corrections"]:
            seen["corrections"] = live.trainer.corrections
            entered.append(now)
        if live.overlays > seen["overlays"]:
            seen["overlays"] = live.overlays
            overlays.append(now)

    def paint() -> None:
        cell = ids[len(edits) % len(ids)]
        idx = np.nonzero(truth == cell)
        layer.data_setitem(idx, len(edits) + 2)
        edits.append(time.perf_counter())

    timer, painter, loop = QTimer(), QTimer(), QEventLoop()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    painter.setInterval(1500)
    painter.timeout.connect(paint)
    live.worker.finished.connect(loop.quit)
    QTimer.singleShot(int(args.seconds * 1000), widget.stop_live)
    t0 = time.perf_counter()
    timer.start()
    painter.start()
    live.worker.start()
    loop.exec_()
    painter.stop()
    timer.stop()
    gaps = np.diff(np.array(ticks)) * 1000.0
    lags = [e2 - e1 for e1, e2 in zip(edits, entered, strict=False)]
    refresh = np.diff(np.array([t0, *overlays]))
    print(f"cpu cores: {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, worker torch "
          f"threads: {_training_run.worker_threads()}, image {args.size}x{args.size}, "
          f"shipped model; {live.trainer.steps} steps in {ticks[-1] - t0:.1f} s")
    print(f"timer gaps over {gaps.size} ticks: max {gaps.max():.1f} ms, p99 "
          f"{np.percentile(gaps, 99):.1f} ms (goal: max < 100 ms)")
    worst = np.argsort(gaps)[::-1][:5]
    print("longest gaps (ms @ s after start): " + ", ".join(
        f"{gaps[i]:.0f} @ {ticks[i] - t0:.1f}" for i in sorted(worst)) + "; overlays @ " +
        ", ".join(f"{t - t0:.1f}" for t in overlays))
    print(f"edits: {len(edits)}, entered training: {len(entered)}, edit -> training max "
          f"{max(lags, default=float('nan')):.2f} s (goal < 1 s)")
    print(f"overlay refreshes: {len(overlays)}, interval mean {refresh.mean():.1f} s, max "
          f"{refresh.max():.1f} s (goal: <= 5 s)" if overlays else "no overlay refresh")
    viewer.close()


if __name__ == "__main__":
    main()
