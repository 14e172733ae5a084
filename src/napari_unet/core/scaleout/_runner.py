"""Tasks run in a loop or on a dask client, and outputs published atomically."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class _Runner:
    """Runs one task per argument tuple, in a loop or on a dask client, counting progress."""

    def __init__(self, client: Any, progress: Callable[[int, int], Any] | None, total: int):
        self.client = client
        self.progress = progress
        self.total = total
        self.done = 0

    def tick(self) -> None:
        """Count one finished task."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def map(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
        if self.client is None:
            out = []
            for args in jobs:
                out.append(fn(*args))
                self.tick()
            return out
        from distributed import as_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in jobs]
        try:
            for _ in as_completed(futures):
                self.tick()
            return self.client.gather(futures)
        finally:
            for f in futures:
                f.cancel()


def _temp_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a finished store into place (replacing ``dest`` only with ``overwrite``)."""
    if dest.exists():
        if not overwrite:
            raise FileExistsError(f"{dest} already exists; not overwriting it")
        trash = _temp_sibling(dest, "old")
        os.replace(dest, trash)
        os.replace(tmp, dest)
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()
    else:
        os.replace(tmp, dest)


def _refuse_existing(targets: Sequence[Path | None], overwrite: bool) -> None:
    """FileExistsError for an existing output, unless ``overwrite``."""
    for target in targets:
        if target is not None and target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; not overwriting it")
