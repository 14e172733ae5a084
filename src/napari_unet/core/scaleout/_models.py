"""The model a scale-out task predicts with: resolved from a reference, prepared once."""

from __future__ import annotations

import hashlib
import io
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..model import UNet

_MODELS: dict[tuple[str, int], UNet] = {}
_MODELS_LOCK = threading.Lock()


def _model_bytes(model: UNet) -> bytes:
    import torch

    from ..checkpoint import checkpoint_dict

    buffer = io.BytesIO()
    torch.save(checkpoint_dict(model), buffer)
    return buffer.getvalue()


_PREPARED: weakref.WeakKeyDictionary[UNet, tuple[tuple, UNet]] = weakref.WeakKeyDictionary()


def _weights_key(model: UNet) -> tuple:
    """Changes whenever a weight or buffer of ``model`` is replaced or changed in place
    (torch counts in-place writes per tensor: an optimizer step, ``load_state_dict``)."""
    return tuple((t.data_ptr(), t._version) for t in model.state_dict().values())


def _prepared(model: UNet, device: Any) -> UNet:
    """The CPU :func:`~.tiling.inference_model` of ``model``, made once per model and weights;
    on a GPU ``model`` itself (each prediction makes its copy and frees the device memory)."""
    from ..device import resolve_device
    from ..tiling import inference_model

    if resolve_device(device).type != "cpu":
        return model
    key = _weights_key(model)
    cached = _PREPARED.get(model)
    if cached is None or cached[0] != key:
        cached = _PREPARED[model] = (key, inference_model(model, "cpu"))
    return cached[1]


def _resolve_model(ref: Any) -> UNet:
    """A UNet from a UNet, checkpoint bytes or a checkpoint path (cached per thread)."""
    if isinstance(ref, UNet):
        return ref
    from ..bioimageio import load_any
    from ..checkpoint import load_model_bytes

    if isinstance(ref, (bytes, bytearray)):
        key = hashlib.sha256(ref).hexdigest()
        loader: Callable[[], UNet] = lambda: load_model_bytes(bytes(ref))  # noqa: E731
    else:
        path = Path(ref)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        key = f"{path.resolve()}:{path.stat().st_mtime_ns}"
        loader = lambda: load_any(path)  # noqa: E731  (checkpoint or bioimage.io package)
    # one model per thread (each thread's inference copy is made from its own: _prepared)
    cache_key = (key, threading.get_ident())
    with _MODELS_LOCK:
        model = _MODELS.get(cache_key)
    if model is None:
        model = loader()
        model.eval()
        with _MODELS_LOCK:
            _MODELS[cache_key] = model
    return model


def _share_model(model: UNet, client: Any) -> Any:
    """The model itself locally; its checkpoint bytes broadcast to the workers with a client."""
    if client is None:
        return model
    [ref] = client.scatter([_model_bytes(model)], broadcast=True)
    return ref
