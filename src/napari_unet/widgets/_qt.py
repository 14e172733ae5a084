"""Qt helpers shared by the widgets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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
