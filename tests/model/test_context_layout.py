"""WorldModelConfig.context_layout: the context latents as tokens (``sequence``) or on channels (``channels``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import perturb, tiny_autoencoder
from vap_env.model import ActionToVideoModel, WorldModelConfig

ModelFactory = Callable[..., ActionToVideoModel]


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _latent_model(layout: str, **overrides: object) -> ActionToVideoModel:
    """A seeded, perturbed tiny model on the 4x latent codec (8x8 latents, patch 2: 16 tokens a frame)."""
    config = WorldModelConfig.tiny(
        image_size=32, patch_size=2, controlnet_encoder_channels=8, context_layout=layout, **overrides
    )
    torch.manual_seed(0)
    model = ActionToVideoModel(config, codec=tiny_autoencoder()).eval()
    return perturb(model, encoder_gain=10.0)


def _batch(context_frames: int, frames_per_step: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _seed(5)
    context = torch.rand(2, context_frames, 3, 32, 32, generator=g) * 2 - 1
    target = torch.rand(2, frames_per_step, 3, 32, 32, generator=g) * 2 - 1
    prompts = torch.rand(2, context_frames + frames_per_step, 3, 32, 32, generator=g) * 2 - 1
    return context, target, prompts


def test_channels_layout_has_only_the_generated_frames_as_tokens() -> None:
    tokens = {}
    for layout in ("sequence", "channels"):
        model = _latent_model(layout, context_frames=2)
        latent_channels = model.codec.latent_channels
        config = model.transformer.config
        if layout == "sequence":
            assert (model.num_sequence_context, config.in_channels) == (2, 2 * latent_channels)
        else:  # the noisy target, then both context latents, on every token's channels
            assert (model.num_sequence_context, config.in_channels) == (0, 3 * latent_channels)
        tokens[layout] = config.sample_frames * (8 // 2) ** 2
        context, _, prompts = _batch(2)
        trajectory = model._trajectory_tokens(prompts.to(model.dtype), model.dtype)
        assert trajectory.shape == (2, tokens[layout], config.num_attention_heads * config.attention_head_dim)
    assert tokens == {"sequence": 48, "channels": 16}  # 3 latent frames of 16 tokens, then 1


def test_channels_conditioning_stacks_every_context_latent_on_every_generated_frame() -> None:
    model = _latent_model("channels", context_frames=2, frames_per_step=2)
    context = torch.randn(3, 2, 4, 8, 8, generator=_seed(0))
    conditioning = model._conditioning(context)
    assert conditioning.shape == (3, 2, 8, 8, 8)
    for t in range(2):  # both generated frames carry context frame 0's latent, then frame 1's
        assert torch.equal(conditioning[:, t, :4], context[:, 0])
        assert torch.equal(conditioning[:, t, 4:], context[:, 1])


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_channels_model_trains_and_generates_from_both_context_frames(frames_per_step: int) -> None:
    model = _latent_model("channels", context_frames=2, frames_per_step=frames_per_step)
    context, target, prompts = _batch(2, frames_per_step)
    model.train()
    loss = model.training_loss(context, target, prompts, generator=_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    grads = {
        part: sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
        for part, params in model._parts().items()
    }
    assert grads["base"] > 0 and grads["controlnet"] > 0 and grads["lora"] > 0
    model.eval()
    frames = model.generate(context, prompts, generator=_seed(1))
    assert frames.shape == (2, frames_per_step, 3, 32, 32)
    assert torch.equal(model.generate(context, prompts, generator=_seed(1)), frames)  # seeded
    # each context frame reaches the generated frames: the old one through its channels, and so does the
    # prompt of the old frame, through the trajectory encoder's temporal kernels
    for changed in (
        (context.flip(1), prompts),  # the two context frames swapped
        (torch.stack([context[:, 0] * 0.5, context[:, 1]], dim=1), prompts),  # the older frame alone
        (context, torch.cat([prompts[:, :1].flip(-1), prompts[:, 1:]], dim=1)),  # the older prompt alone
    ):
        other = model.generate(*changed, generator=_seed(1))
        assert (other - frames).abs().mean() > 1e-3


def test_channels_model_guidance_and_save_load(tmp_path: Path) -> None:
    model = _latent_model("channels", context_frames=2)
    context, _, prompts = _batch(2)
    guided = model.generate(context, prompts, generator=_seed(2), guidance_scale=2.0)
    plain = model.generate(context, prompts, generator=_seed(2))
    assert guided.shape == plain.shape and (guided - plain).abs().mean() > 1e-4
    model.save_pretrained(tmp_path / "wm")
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm").eval()
    assert loaded.config.context_layout == "channels" and loaded.num_sequence_context == 0
    assert torch.equal(loaded.generate(context, prompts, generator=_seed(2)), plain)


def test_a_channels_change_model_that_predicts_no_change_repeats_the_last_context_frame() -> None:
    # as for the sequence layout (test_world_model.py): a zero network output is a zero change in one step
    model = _latent_model("channels", context_frames=2, target="change", change_scale=3.0)
    with torch.no_grad():
        model.transformer.proj_out.weight.zero_()
        model.transformer.proj_out.bias.zero_()
    context, _, prompts = _batch(2)
    frames = model.generate(context, prompts, num_inference_steps=1, generator=_seed(1))
    repeated = model.codec.decode(model.codec.encode(context[:, 1:]))
    assert torch.allclose(frames, repeated, atol=1e-5)


def test_context_layout_is_validated_and_old_configs_load_as_sequence() -> None:
    with pytest.raises(
        ValueError, match=r"`context_layout` must be one of \['sequence', 'channels'\], got 'stack'"
    ):
        WorldModelConfig.tiny(context_layout="stack")
    saved = json.loads(WorldModelConfig.tiny().to_json())
    del saved["context_layout"]  # a config written before the field existed
    assert WorldModelConfig.from_json(json.dumps(saved)).context_layout == "sequence"
    differences = WorldModelConfig.tiny().architecture_differences(
        WorldModelConfig.tiny(context_layout="channels")
    )
    assert differences == {
        "context_layout": ("sequence", "channels")
    }  # weights of one never load as the other
