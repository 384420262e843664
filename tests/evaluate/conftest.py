"""Shared fixtures of the evaluation tests: a tiny saved world model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_world_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded Panda world model (32x32 pixel space, patch 4, 2 denoising steps), saved."""
    directory = tmp_path_factory.mktemp("tiny_world_model")
    tiny_world_model(num_inference_steps=2).save_pretrained(directory)
    return directory
