"""Fixtures of the world-model env tests: a tiny seeded model saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_world_model
from vap_env.model import ActionToVideoModel


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model directory (``model=DIR``): 64x64 Panda frames, patch 8 (64 tokens a frame), 2 blocks.

    Its prompt (the action) changes the generated frame as in a trained model (``controllable``).
    """
    path = tmp_path_factory.mktemp("wm") / "tiny64"
    model = tiny_world_model(
        controllable=True,
        robot="panda",
        image_size=64,
        patch_size=8,
        num_layers=2,
        controlnet_layers=1,
        num_inference_steps=1,
    )
    model.eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model(model_dir: Path) -> ActionToVideoModel:
    """The tiny model, loaded once and shared by the tests that pass a model object."""
    return ActionToVideoModel.from_pretrained(model_dir).eval()
