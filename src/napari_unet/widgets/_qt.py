"""Qt helpers shared by the widgets."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QWidget

from ._session import get_session

if TYPE_CHECKING:
    import napari


@contextlib.contextmanager
def unless_deleted() -> Iterator[None]:
    """Skip the rest of the block when Qt has already deleted the widget it touches.

    A worker's signal can arrive after the user closed the dock; touching the deleted C++
    object then raises ``RuntimeError: wrapped C/C++ object ... has been deleted``. Any other
    RuntimeError is raised as usual.
    """
    try:
        yield
    except RuntimeError as error:
        if "deleted" not in str(error):
            raise


def viewer_window(viewer: Any) -> Any | None:
    """The viewer's Qt main window, or None (no window, or already closed).

    Reached through napari's public, documented ``viewer.window.main_menu`` (the menu bar)
    and Qt's ``QWidget.window()``, not napari's private ``Window._qt_window``.
    """
    menu = getattr(getattr(viewer, "window", None), "main_menu", None)
    if menu is None:
        return None
    with unless_deleted():
        return menu.window()
    return None


def on_viewer_closed(viewer: Any, callback: Callable[..., None]) -> bool:
    """Call ``callback`` when the viewer's window is destroyed; False if it has no window.

    napari has no public "viewer closed" event (napari/napari#4623); the main window's own
    ``destroyed`` signal is the moment its widgets, and the viewer with them, are gone. The
    connection is never undone (disconnecting from a window being deleted can crash Qt) and
    keeps ``callback`` until then: pass a plain function that holds its owner weakly.
    """
    window = viewer_window(viewer)
    if window is None:
        return False
    window.destroyed.connect(callback)
    return True


def calls_weakly(widget: QWidget, method: str) -> Callable[..., None]:
    """A plain function calling ``widget.<method>`` while the widget lives (for napari events).

    Disconnecting a bound method of a deleted widget makes napari compare it with the other
    callbacks, which raises RuntimeError (deleted C++ object); this function, holding the widget
    weakly, is always safe to disconnect.
    """
    wref = weakref.ref(widget)

    def call(*args: Any) -> None:
        w = wref()
        if w is not None:
            with unless_deleted():  # the widget may be deleted by Qt meanwhile
                getattr(w, method)(*args)

    return call


class ViewerWidget(QWidget):
    """A plugin widget of one viewer: ``viewer`` and its shared model ``session``."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer, self.session = napari_viewer, get_session(napari_viewer)

    def load_into_session(self, path: str, load: Callable[[str], Any]) -> bool:
        """Make ``load(path)`` the session's model; a bad file gives a notification, False."""
        from . import _notify  # not at the top: _notify imports this module

        try:
            model = load(path)
        except (ValueError, OSError) as exc:
            _notify.notify_error(f"Cannot load model from {path}: {exc}")
            return False
        self.session.set_model(model, f"checkpoint: {path}")
        return True
