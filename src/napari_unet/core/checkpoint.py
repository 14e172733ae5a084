"""Save and load trained networks as single, self-describing files.

A checkpoint is a ``torch.save`` of a dict of plain types and tensors only, so that
``torch.load(..., weights_only=True)`` (no arbitrary code execution) can read it::

    {"format": "napari-unet", "format_version": 1, "napari_unet_version": "...",
     "config": model.config, "metadata": model.metadata, "state_dict": {...}}
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .io import publish
from .model import UNet

FORMAT = "napari-unet"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a usable napari-unet checkpoint (corrupt, foreign or incompatible)."""


def package_version() -> str:
    """The installed napari-unet version, recorded in checkpoints and packages."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("napari-unet")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover
        pass
    import napari_unet

    return str(getattr(napari_unet, "__version__", "unknown"))


def plain_metadata(value: Any, where: str = "metadata") -> Any:
    """Convert ``value`` to plain Python types (weights_only-loadable) or raise ValueError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} keys must be strings, got {k!r}")
            out[k] = plain_metadata(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [plain_metadata(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise ValueError(
        f"{where} holds a {type(value).__name__}; checkpoint metadata must be made of "
        f"str/int/float/bool/None, lists, tuples and dicts"
    )


def checkpoint_dict(model: UNet) -> dict[str, Any]:
    """The dict that :func:`save_model` writes (state on the CPU)."""
    if not isinstance(model, UNet):
        raise ValueError(f"can only save a napari_unet UNet, got {type(model).__name__}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": package_version(),
        "config": plain_metadata(model.config, "config"),
        "metadata": plain_metadata(dict(model.metadata)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def save_model(model: UNet, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically; FileExistsError if it exists and not ``overwrite``.

    The data goes to a temporary file in the same folder that then replaces ``path`` in one step
    (:func:`~napari_unet.core.io.publish`), so an interrupted save never leaves a truncated
    checkpoint behind, and the file gets the umask's permissions like any other new file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as model.pt")
    exists = f"{path} exists; pass overwrite=True to replace it"
    if path.exists() and not overwrite:
        raise FileExistsError(exists)
    data = checkpoint_dict(model)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        try:  # no-clobber even if path appeared meanwhile; umask permissions, not 0600
            publish(tmp, path, overwrite)
        except FileExistsError:
            raise FileExistsError(exists) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def model_from_dict(data: Any, source: str, map_location: Any) -> UNet:
    """A :class:`UNet` from a loaded checkpoint dict; ``CheckpointError`` naming ``source``."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        values = data.values() if isinstance(data, dict) else ()
        if values and all(isinstance(v, torch.Tensor) for v in values):
            kind = "a bare state_dict (weights without the network configuration)"
        else:
            kind = f"a {type(data).__name__}"
        raise CheckpointError(f"{source} is not a napari-unet checkpoint: it holds {kind}")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{source}: missing or bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} was written by a newer napari-unet "
            f"({data.get('napari_unet_version', '?')}, format version {version}); this version "
            f"reads format {FORMAT_VERSION} only: please upgrade napari-unet"
        )
    config, state, metadata = data.get("config"), data.get("state_dict"), data.get("metadata", {})
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{source}: config or state_dict missing")
    try:
        model = UNet(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid network configuration {config!r}: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{source}: weights do not match the stored configuration ({first[0] if first else e})"
        ) from e
    model.metadata = dict(metadata) if isinstance(metadata, dict) else {}
    if map_location is not None:
        model.to(map_location)
    return model


def _load(f: BinaryIO | str, source: str, map_location: Any) -> UNet:
    try:
        data = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, truncated stream, foreign pickle, ...
        reason = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{source} is not a readable napari-unet checkpoint (corrupt, truncated or a "
            f"different kind of file): {type(e).__name__}: {reason}"
        ) from e
    return model_from_dict(data, source, map_location)


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> UNet:
    """Load a checkpoint written by :func:`save_model` (safely: ``weights_only=True``).

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for a corrupt,
    truncated or foreign file, a newer format version, or weights not matching the config.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    return _load(str(path), str(path), map_location)


def load_model_bytes(data: bytes, map_location: Any = "cpu") -> UNet:
    """Load a checkpoint from its bytes (e.g. ``importlib.resources`` ``read_bytes()``)."""
    return _load(io.BytesIO(data), "checkpoint data", map_location)
