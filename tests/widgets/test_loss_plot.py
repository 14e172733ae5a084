"""LossPlot: records finite losses, smooths them, paints at any size without errors."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet.widgets.loss_plot import LossPlot


def test_append_clear_and_paint(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(200, 100)
    plot.grab()  # empty plot paints its hint text
    plot.append(1, 0.7)
    plot.grab()
    for step in range(2, 2000):  # more points than pixels: decimated drawing
        plot.append(step, 0.7 / step)
    image = plot.grab().toImage()
    assert image.width() == 200
    assert plot.steps[:3] == [1, 2, 3] and len(plot.values) == 1999
    assert plot.values[0] == 0.7 and math.isclose(plot.values[-1], 0.7 / 1999)
    plot.clear()
    assert plot.values == [] and plot.steps == [] and plot.smoothed == []
    plot.append(5, 1.0)
    plot.append(6, 1.0)  # constant curve: no division by zero
    plot.grab()


def test_non_finite_losses_are_skipped(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    for step, loss in enumerate([0.5, float("nan"), float("inf"), 0.4]):
        plot.append(step, loss)
    assert plot.values == [0.5, 0.4] and plot.steps == [0, 3]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.0, 1e3, allow_nan=False), min_size=1, max_size=60))
def test_smoothed_curve_stays_within_the_data(qapp, losses):
    plot = LossPlot()
    try:
        for step, loss in enumerate(losses):
            plot.append(step, loss)
        assert plot.values == [float(v) for v in losses]
        assert len(plot.smoothed) == len(losses)
        lo, hi = min(losses), max(losses)
        tol = 1e-9 * max(1.0, hi)
        assert all(lo - tol <= s <= hi + tol for s in plot.smoothed)
        assert np.isclose(plot.smoothed[0], losses[0])
    finally:
        plot.deleteLater()


def test_training_display_shows_a_run(qtbot):
    from napari_unet.widgets.loss_plot import TrainingDisplay

    display = TrainingDisplay()
    qtbot.addWidget(display)
    display.show_step(1, 10, 0.5, "old run")
    display.begin(40, "starting")
    assert display.loss_plot.values == [] and display.progress_bar.value() == 0
    assert display.progress_bar.maximum() == 40 and display.status.text() == "starting"
    display.show_step(3, 40, 0.25, "step 3/40")
    assert display.progress_bar.value() == 3 and display.loss_plot.values == [0.25]
    display.set_status("predicting")
    assert display.status.text() == "predicting"
    display.grab()
