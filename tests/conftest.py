"""Shared test settings: small hypothesis budgets and deterministic torch on few threads."""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """Use the machine's cores but never oversubscribe them in CI."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
