"""Pick the compute device (CUDA, Apple MPS or CPU) and release its cached memory."""

from __future__ import annotations

import gc

import torch

_KNOWN = ("cpu", "cuda", "mps")


def _cuda_ok() -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # broken driver installs raise instead of returning False
        return False


def _mps_ok() -> bool:
    try:
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


def available_devices() -> list[str]:
    """Device types usable here: "cpu" (always), then "cuda" and/or "mps" when they work."""
    found = ["cpu"]
    if _cuda_ok():
        found.append("cuda")
    if _mps_ok():
        found.append("mps")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" / "cpu" / "cuda" / "cuda:N" / "mps" (or a torch.device) into a torch.device.

    "auto" prefers CUDA, then MPS, then CPU. Asking for a device that is not available raises
    ``ValueError`` naming the ones that are.
    """
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise ValueError(f"device must be a string such as 'auto' or 'cpu', got {device!r}")
    available = available_devices()
    if name == "auto":
        for kind in ("cuda", "mps", "cpu"):
            if kind in available:
                return torch.device(kind)
    kind, _, index = name.partition(":")
    if kind not in _KNOWN:
        raise ValueError(f"unknown device {device!r}; use 'auto' or one of {', '.join(available)}")
    if kind not in available:
        raise ValueError(
            f"device {kind!r} is not available on this machine; available: {', '.join(available)}"
        )
    if index:
        if not index.isdigit():
            raise ValueError(f"bad device index in {device!r}")
        if kind == "cuda" and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"{device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) present"
            )
        return torch.device(kind, int(index))
    return torch.device(kind)


def free_device_memory(device: str | torch.device | None = None) -> None:
    """Empty the CUDA/MPS caching allocator; a no-op on the CPU.

    Garbage is collected first only for an accelerator: a full collection holds the GIL for
    up to a second, which would freeze napari's event loop at the end of every CPU run.
    """
    kind = torch.device(device).type if device is not None else None
    if kind == "cpu":
        return
    gc.collect()
    if kind in (None, "cuda") and _cuda_ok():
        torch.cuda.empty_cache()
    if kind in (None, "mps") and _mps_ok():
        torch.mps.empty_cache()


def training_memory_format(device: str | torch.device) -> torch.memory_format:
    """The layout a model trains in on ``device``: channels-last on the CPU, where oneDNN's
    convolutions, pooling and their gradients run faster in it (benchmarks/README.md, finding
    M5); the default layout on accelerators, where it has not been measured."""
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def place_for_training(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` in its training layout (:func:`training_memory_format`)."""
    return model.to(device, memory_format=training_memory_format(device))


def release_to_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """Move ``model`` back to the CPU in the default layout (as it is saved and shared)."""
    return model.to("cpu", memory_format=torch.contiguous_format)
