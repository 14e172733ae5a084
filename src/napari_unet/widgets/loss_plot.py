"""Live training displays: a loss curve drawn with QPainter (no plotting dependency), a
progress bar that never repaints synchronously, and the panel of both with a status line that
Train and Retrain share."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget


class LossPlot(QWidget):
    """Training loss against step, with a running mean so the trend is readable.

    ``append(step, loss)`` adds a point and schedules a repaint (cheap: painting happens once
    per event-loop turn however many points arrive); ``values`` holds the recorded losses.
    """

    def __init__(self, parent: QWidget | None = None, smoothing: float = 0.9) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.values: list[float] = []
        self.smoothed: list[float] = []
        self._smoothing = smoothing
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setToolTip("training loss (thin) and its running mean (thick)")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(260, 120)

    def append(self, step: int, loss: float) -> None:
        """Record the loss of one optimizer step; non-finite losses are kept out of the curve."""
        loss = float(loss)
        if not math.isfinite(loss):
            return
        self.steps.append(int(step))
        self.values.append(loss)
        prev = self.smoothed[-1] if self.smoothed else loss
        self.smoothed.append(self._smoothing * prev + (1 - self._smoothing) * loss)
        self.update()

    def clear(self) -> None:
        """Forget all points (a new training run starts)."""
        self.steps.clear()
        self.values.clear()
        self.smoothed.clear()
        self.update()

    def _path(self, ys: list[float], x0: float, y0: float, w: float, h: float,
              lo: float, hi: float) -> QPainterPath:
        """Polyline of ``ys``, decimated to about one point per pixel column."""
        n = len(ys)
        stride = max(1, n // max(1, int(w)))
        s_min, s_max = self.steps[0], self.steps[-1]
        span = max(1, s_max - s_min)
        path = QPainterPath()
        for k, i in enumerate(list(range(0, n, stride)) + ([n - 1] if (n - 1) % stride else [])):
            px = x0 + (self.steps[i] - s_min) / span * w
            py = y0 + h - (ys[i] - lo) / (hi - lo) * h
            if k == 0:
                path.moveTo(QPointF(px, py))
            else:
                path.lineTo(QPointF(px, py))
        return path

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        rect = self.rect().adjusted(4, 4, -4, -4)
        text_color = self.palette().color(self.foregroundRole())
        painter.setPen(QPen(QColor(128, 128, 128), 1))
        painter.drawRect(rect)
        if len(self.values) < 2:
            painter.setPen(text_color)
            painter.drawText(rect, Qt.AlignCenter, "loss curve appears during training")
            painter.end()
            return
        lo, hi = min(self.values), max(self.values)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        margin = 16.0
        x0, y0 = rect.left() + 2.0, rect.top() + margin
        w, h = rect.width() - 4.0, rect.height() - 2 * margin
        raw = QColor(100, 160, 255, 110)
        painter.setPen(QPen(raw, 1))
        painter.drawPath(self._path(self.values, x0, y0, w, h, lo, hi))
        painter.setPen(QPen(QColor(255, 170, 60), 2))
        painter.drawPath(self._path(self.smoothed, x0, y0, w, h, lo, hi))
        painter.setPen(text_color)
        painter.drawText(rect.adjusted(4, 0, -4, 0), Qt.AlignTop | Qt.AlignLeft, f"{hi:.3g}")
        painter.drawText(rect.adjusted(4, 0, -4, 0), Qt.AlignBottom | Qt.AlignLeft, f"{lo:.3g}")
        painter.drawText(
            rect.adjusted(4, 0, -4, 0), Qt.AlignTop | Qt.AlignRight,
            f"step {self.steps[-1]}  loss {self.values[-1]:.4f}",
        )
        painter.end()


class LazyProgressBar(QProgressBar):
    """A QProgressBar whose updates are scheduled, never painted synchronously.

    ``QProgressBar.setValue`` repaints immediately; in a napari window (an OpenGL canvas in the
    same top-level window) that forces a full window composition per training step, which
    freezes the GUI (benchmarks/README.md, "UI responsiveness"). Here the value change only
    schedules a normal, coalesced ``update()``.
    """

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt API)
        self.setUpdatesEnabled(False)
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # schedules update()

    def setRange(self, minimum: int, maximum: int) -> None:  # noqa: N802 (Qt API)
        self.setUpdatesEnabled(False)
        try:
            super().setRange(minimum, maximum)
        finally:
            self.setUpdatesEnabled(True)


def status_label() -> QLabel:
    """A wrapped two-line status label whose changing text never resizes the dock.

    A size hint that follows the text would relayout the viewer window and redraw its canvas
    on every training step.
    """
    label = QLabel("")
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    label.setMinimumHeight(2 * label.fontMetrics().height())
    return label


class TrainingDisplay(QWidget):
    """Progress bar, status line and live loss curve of one training run.

    ``begin(total, text)`` resets them for a new run, ``show_step(step, total, loss, text)``
    records one optimizer step, ``set_status(text)`` changes the line only.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.progress_bar = LazyProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = status_label()
        self.loss_plot = LossPlot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress_bar, self.status, self.loss_plot):
            layout.addWidget(widget)

    def begin(self, total_steps: int, text: str) -> None:
        """A new run starts: empty curve, bar at 0 of ``total_steps``."""
        self.loss_plot.clear()
        self.progress_bar.setRange(0, max(1, int(total_steps)))
        self.progress_bar.setValue(0)
        self.status.setText(text)

    def show_step(self, step: int, total_steps: int, loss: float, text: str) -> None:
        """One optimizer step finished: move the bar, add the loss, show ``text``."""
        self.loss_plot.append(step, loss)
        self.progress_bar.setRange(0, max(1, int(total_steps)))
        self.progress_bar.setValue(int(step))
        self.status.setText(text)

    def set_status(self, text: str) -> None:
        """Change the status line (e.g. "predicting…", "training cancelled at step 7")."""
        self.status.setText(text)
