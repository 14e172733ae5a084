"""Thin notification helpers so user mistakes show a message, never a traceback dialog.

Widgets call these (looked up at call time through the module) so tests can patch them.
"""

from __future__ import annotations

from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning

from ._qt import unless_deleted


def notify_error(msg: str) -> None:
    """Tell the user something went wrong (bad input, failed load...)."""
    show_error(str(msg))


def notify_warning(msg: str) -> None:
    """Tell the user about something that worked but deserves attention."""
    show_warning(str(msg))


def notify_info(msg: str) -> None:
    """Tell the user about progress or a finished action."""
    show_info(str(msg))


def notify_in(status: Any, msg: str, level: str = "error") -> None:
    """Notify through napari and keep ``msg`` in ``status`` (a QLabel or magicgui Label).

    A toast fades and is cut to one line; the status line keeps the last error or warning
    where the user looks, until the next message replaces it. ``level``: "error",
    "warning" or "info".
    """
    notify = {"error": notify_error, "warning": notify_warning}.get(level, notify_info)
    notify(msg)
    text = str(msg)
    with unless_deleted():  # the label may already be deleted by Qt
        if hasattr(status, "setText"):
            status.setText(text)
            status.setToolTip(text)
        elif status is not None:
            status.value = text
