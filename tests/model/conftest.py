"""Fixtures of the world-model tests: seeded inputs for a tiny model (the models: ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from vap_env.model import ActionToVideoModel


def _random_batch(
    model: ActionToVideoModel, batch_size: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Seeded ``(context, target, prompts)`` in [-1, 1] shaped for ``model``'s config."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    height, width = c.image_size
    context = torch.rand(batch_size, c.context_frames, 3, height, width, generator=g) * 2 - 1
    target = torch.rand(batch_size, c.frames_per_step, 3, height, width, generator=g) * 2 - 1
    num_frames = c.context_frames + c.frames_per_step
    if c.prompt == "state":
        prompts: torch.Tensor | None = torch.rand(batch_size, num_frames, c.state_dim, generator=g) * 2 - 1
    elif c.prompt == "none":
        prompts = None
    else:
        prompts = torch.rand(batch_size, num_frames, c.prompt_channels, height, width, generator=g) * 2 - 1
    return context, target, prompts


@pytest.fixture
def make_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Factory of seeded inputs: ``make_batch(model, batch_size=2, seed=0) -> (context, target, prompts)``."""
    return _random_batch
