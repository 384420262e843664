"""Shared fixtures of the evaluation tests: a tiny saved world model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vap_env.model import ActionToVideoModel, WorldModelConfig


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: the CPU is shared, and these models are too small to gain from more."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded Panda world model (32x32 pixel space, patch 4, 2 denoising steps), saved."""
    torch.manual_seed(0)
    config = WorldModelConfig.tiny(
        image_size=32, patch_size=4, controlnet_encoder_channels=8, num_inference_steps=2
    )
    directory = tmp_path_factory.mktemp("tiny_world_model")
    ActionToVideoModel(config).save_pretrained(directory)
    return directory
