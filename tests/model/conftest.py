"""Shared fixtures for the world-model tests: one CPU thread, tiny seeded models and inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from vap_env.model import ActionToVideoModel, WorldModelConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # the CPU is shared with other test runs; these models are too small to gain from threads
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_config(**overrides: object) -> WorldModelConfig:
    """A pixel-space tiny config: 32x32 frames, patch 4 (64 tokens a frame), 1 context + 1 generated frame."""
    values: dict[str, object] = dict(image_size=32, patch_size=4, controlnet_encoder_channels=8)
    values.update(overrides)
    return WorldModelConfig.tiny(**values)


def _tiny_model(seed: int = 0, **overrides: object) -> ActionToVideoModel:
    """A seeded tiny :class:`ActionToVideoModel` with a pixel codec."""
    torch.manual_seed(seed)
    return ActionToVideoModel(_tiny_config(**overrides))


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
def make_config() -> Callable[..., WorldModelConfig]:
    """Factory of tiny pixel-space configs (keyword overrides)."""
    return _tiny_config


@pytest.fixture
def make_model() -> Callable[..., ActionToVideoModel]:
    """Factory of seeded tiny models: ``make_model(seed=0, **config_overrides)``."""
    return _tiny_model


@pytest.fixture
def make_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Factory of seeded inputs: ``make_batch(model, batch_size=2, seed=0) -> (context, target, prompts)``."""
    return _random_batch
