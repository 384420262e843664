"""Fixtures of the world-model env tests: one CPU thread, a tiny seeded model saved once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


def tiny_model(seed: int = 0, **overrides: object) -> ActionToVideoModel:
    """An untrained but seeded pixel-space model: 64x64 Panda frames, patch 8 (64 tokens a frame), 2 blocks.

    The zero-initialised weights (ControlNet output projections, LoRA B) are set to small seeded values and
    the trajectory encoder's output is scaled up, so the prompt (the action) changes the generated frame, as
    in a trained model (untrained, another prompt moves a frame by ~0.01 grey levels on average; here ~0.05).
    """
    values: dict[str, object] = dict(
        robot="panda",
        image_size=64,
        patch_size=8,
        num_layers=2,
        controlnet_layers=1,
        controlnet_encoder_channels=8,
        num_inference_steps=1,
    )
    values.update(overrides)
    torch.manual_seed(seed)
    model = ActionToVideoModel(WorldModelConfig.tiny(**values)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "controlnet_blocks" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
            elif "trajectory_encoder.proj_out" in name:
                param.mul_(10.0)
    return model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model directory (``model=DIR``)."""
    path = tmp_path_factory.mktemp("wm") / "tiny64"
    tiny_model().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model(model_dir: Path) -> ActionToVideoModel:
    """The tiny model, loaded once and shared by the tests that pass a model object."""
    return ActionToVideoModel.from_pretrained(model_dir).eval()
