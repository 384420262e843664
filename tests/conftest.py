"""Shared by every test directory: one torch thread for the whole run, and the one tiny world-model factory.

The factory is plain functions, importable anywhere (``from tests.conftest import tiny_world_model``):
:func:`tiny_model_config` (a config), :func:`tiny_world_model` (a seeded model), :func:`perturb` (moves the
zero-initialised weights off zero) and :func:`tiny_autoencoder` (a latent codec for it); ``make_config`` and
``make_model`` are the fixtures wrapping the first two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.codec import Codec, FrameAutoencoder

# What every tiny model shares unless overridden: 32x32 pixel-space frames, patch 4 (64 tokens a frame), an
# 8-channel ControlNet trajectory encoder; the rest is :meth:`WorldModelConfig.tiny`'s CPU preset.
TINY_BASE: dict[str, object] = dict(image_size=32, patch_size=4, controlnet_encoder_channels=8)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # The CPU is shared with other test runs, and these models are too small to gain from threads: torch's
    # default of one thread a core oversubscribes a loaded machine, and oversubscribed threads cost 5x here.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _clip_cache_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Training runs keep rendered clips in $VAP_ENV_CACHE (default ~/.cache/vap-env): never the user's in tests.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAP_ENV_CACHE", str(tmp_path_factory.mktemp("vap_env_cache")))
        yield


def tiny_model_config(**overrides: object) -> WorldModelConfig:
    """:meth:`WorldModelConfig.tiny` with :data:`TINY_BASE` (32x32, patch 4, encoder 8), then ``overrides``."""
    values = dict(TINY_BASE)
    values.update(overrides)
    return WorldModelConfig.tiny(**values)


def perturb(model: ActionToVideoModel, seed: int = 0, encoder_gain: float = 1.0) -> ActionToVideoModel:
    """Moves every zero-initialised weight off zero, in place, as training would; returns ``model``.

    LoRA B, the ControlNet output projections and the state embedder's output layer get seeded values of
    scale 0.05; ``encoder_gain`` (if not 1) scales the ControlNet trajectory encoder's output layer.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "controlnet_blocks" in name or name.startswith("state_embedder.mlp.4"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
            elif "trajectory_encoder.proj_out" in name and encoder_gain != 1.0:
                param.mul_(encoder_gain)
    return model


def tiny_world_model(
    seed: int = 0,
    controllable: bool = False,
    codec: Codec | Callable[[], Codec] | None = None,
    **overrides: object,
) -> ActionToVideoModel:
    """A seeded, untrained tiny :class:`ActionToVideoModel` of ``tiny_model_config(**overrides)``.

    Args:
        seed: The torch seed set just before the model (and a ``codec`` function) draws its weights.
        controllable: Make the prompt move the generated frame as in a trained model: :func:`perturb` with
            ``seed`` and the trajectory encoder's output scaled 10x (untrained, another prompt moves a
            64x64 frame by ~0.01 grey levels on average; so perturbed, ~0.05).
        codec: The codec; a function making one is called after seeding, so its weights and then the
            model's come from the seeded stream. ``None``: the pixel codec.
        **overrides: Config fields, over :data:`TINY_BASE`.
    """
    config = tiny_model_config(**overrides)
    torch.manual_seed(seed)
    if codec is not None and not isinstance(codec, torch.nn.Module):
        codec = codec()
    model = ActionToVideoModel(config, codec=codec)
    if controllable:
        perturb(model, seed, encoder_gain=10.0)
    return model


def tiny_autoencoder() -> FrameAutoencoder:
    """A seeded (seed 0) untrained 4x frame autoencoder of 4 latent channels, for ``tiny_world_model(codec=...)``."""
    torch.manual_seed(0)
    return FrameAutoencoder(latent_channels=4, downsample=4, block_channels=(8, 16), norm_num_groups=4).eval()


@pytest.fixture
def make_config() -> Callable[..., WorldModelConfig]:
    """Factory of tiny configs: :func:`tiny_model_config`."""
    return tiny_model_config


@pytest.fixture
def make_model() -> Callable[..., ActionToVideoModel]:
    """Factory of seeded tiny models: :func:`tiny_world_model`, ``make_model(seed=0, **config_overrides)``."""
    return tiny_world_model


def arm_view(desc):  # noqa: ANN001, ANN201 (a RobotDescription -> its CameraSpec)
    """A camera spec that sees the robot's whole arm, for the tests of arm geometry (projection, renders,
    warps): the robot's default camera, except the Panda's, which frames the workspace and leaves its upper
    arm out of view at home; for it, the Panda's default view until December 2026 (target (0.45, 0, 0.18),
    1.05 m, pitch -30)."""
    import dataclasses

    if desc.name != "panda":
        return desc.camera
    return dataclasses.replace(desc.camera, target=(0.45, 0.0, 0.18), distance=1.05, pitch=-30.0)
