"""Thin notification helpers so user mistakes show a message, never a traceback dialog.

Widgets call these (looked up at call time through the module) so tests can patch them.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning


def notify_error(msg: str) -> None:
    """Tell the user something went wrong (bad input, failed load...)."""
    show_error(str(msg))


def notify_warning(msg: str) -> None:
    """Tell the user about something that worked but deserves attention."""
    show_warning(str(msg))


def notify_info(msg: str) -> None:
    """Tell the user about progress or a finished action."""
    show_info(str(msg))
