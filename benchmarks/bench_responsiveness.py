"""GUI responsiveness while the TrainWidget trains: longest gap between 10 ms timer ticks.

Opens a napari viewer with synthetic cells, starts a training run through the TrainWidget
(time budget ``--seconds``) and records, with a 10 ms QTimer in the GUI thread, the gaps
between ticks. A gap much longer than 10 ms is a moment where the GUI froze. Goal: max < 100 ms.

    xvfb-run -a .venv/bin/python benchmarks/bench_responsiveness.py [--seconds 25] [--threads 1]
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
    args = parser.parse_args()

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
    gc.callbacks.remove(gc_callback)
    viewer.close()


if __name__ == "__main__":
    main()
