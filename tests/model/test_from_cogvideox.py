"""ActionToVideoModel.from_cogvideox on tiny random checkpoints saved in the diffusers CogVideoX layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from safetensors.torch import save_file

from tests.conftest import tiny_model_config
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.codec import CogVideoXVAECodec

LATENT_CHANNELS = 4


def _save_checkpoint(
    path: Path,
    image_to_video: bool = True,
    rotary: bool = True,
    learned: bool = False,
    text_embeds: torch.Tensor | None = None,
) -> Path:
    """Writes transformer/, vae/, scheduler/ (and text_embeds.safetensors) as a CogVideoX repo has them."""
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=LATENT_CHANNELS * (2 if image_to_video else 1),
        out_channels=LATENT_CHANNELS,
        time_embed_dim=32,
        text_embed_dim=24,
        num_layers=2,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=6,
        use_rotary_positional_embeddings=rotary,
        use_learned_positional_embeddings=learned,
    ).save_pretrained(path / "transformer")
    AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).save_pretrained(path / "vae")
    CogVideoXDDIMScheduler(
        prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"
    ).save_pretrained(path / "scheduler")
    if text_embeds is not None:
        save_file({"prompt_embeds": text_embeds}, path / "text_embeds.safetensors")
    return path


def _config(**overrides: object) -> WorldModelConfig:
    values: dict[str, object] = dict(
        patch_size=2, context_frames=1, frames_per_step=8, controlnet_layers=1, controlnet_encoder_channels=4
    )
    values.update(overrides)
    return tiny_model_config(**values)


def test_image_to_video_checkpoint_generates(tmp_path: Path) -> None:
    text = torch.randn(1, 3, 24)
    checkpoint = _save_checkpoint(tmp_path / "cogvideox", text_embeds=text)
    model = ActionToVideoModel.from_cogvideox(checkpoint, _config())
    assert isinstance(model.codec, CogVideoXVAECodec)
    assert (model.codec.spatial_factor, model.codec.temporal_factor) == (8, 4)
    assert (model.num_context_latents, model.num_target_latents) == (1, 2)
    assert model.config.stage == "control" and model.trainable_parameters_report()["base"] == 0
    assert (model.config.num_layers, model.config.text_embed_dim, model.config.text_length) == (2, 24, 3)
    assert torch.equal(model.null_text.embedding.detach(), text)
    assert model.controlnet.config.spatial_stride == 16 and model.controlnet.config.temporal_stride == 4

    g = torch.Generator().manual_seed(0)
    context = torch.rand(2, 1, 3, 32, 32, generator=g) * 2 - 1
    prompts = torch.rand(2, 9, 3, 32, 32, generator=g) * 2 - 1
    frames = model.generate(
        context, prompts, num_inference_steps=2, generator=torch.Generator().manual_seed(1)
    )
    assert frames.shape == (2, 8, 3, 32, 32)
    assert torch.isfinite(frames).all() and frames.abs().max() <= 1
    loss = model.training_loss(context, torch.rand(2, 8, 3, 32, 32) * 2 - 1, prompts, generator=g)
    loss.backward()
    assert model.controlnet.controlnet_blocks[0].weight.grad.abs().max() > 0

    model.save_pretrained(tmp_path / "wm")
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm")
    assert isinstance(loaded.codec, CogVideoXVAECodec)
    again = loaded.generate(
        context, prompts, num_inference_steps=2, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(again, frames)


def test_text_to_video_checkpoint_gets_image_channels(tmp_path: Path) -> None:
    checkpoint = _save_checkpoint(tmp_path / "t2v", image_to_video=False, rotary=False)
    original = CogVideoXTransformer3DModel.from_pretrained(checkpoint / "transformer")
    model = ActionToVideoModel.from_cogvideox(checkpoint, _config(prompt="none"))
    weight = model.transformer.patch_embed.proj.weight
    assert weight.shape[1] == 2 * LATENT_CHANNELS
    assert torch.equal(weight[:, :LATENT_CHANNELS], original.patch_embed.proj.weight)
    assert not weight[:, LATENT_CHANNELS:].any()
    assert model.config.text_length == 6  # sin-cos positions fix the text length to max_text_seq_length
    context = torch.rand(1, 1, 3, 32, 32) * 2 - 1
    assert model.generate(context, None, num_inference_steps=1).shape == (1, 8, 3, 32, 32)


def test_learned_positions_warn_on_other_frame_counts(tmp_path: Path) -> None:
    checkpoint = _save_checkpoint(tmp_path / "learned", learned=True)
    with pytest.warns(UserWarning, match="learned positions for 9 frames; with 17 frames"):
        ActionToVideoModel.from_cogvideox(checkpoint, _config(frames_per_step=16, prompt="none"))
    with pytest.raises(ValueError, match="learned positions for a 4x4 latent grid"):
        ActionToVideoModel.from_cogvideox(checkpoint, _config(image_size=64, prompt="none"))


def test_vae_frame_constraints(tmp_path: Path) -> None:
    checkpoint = _save_checkpoint(tmp_path / "cogvideox")
    with pytest.raises(ValueError, match="`frames_per_step` a multiple of 4, got 1 and 1"):
        ActionToVideoModel.from_cogvideox(checkpoint, _config(frames_per_step=1))
    with pytest.raises(ValueError, match="odd number of latent frames"):
        ActionToVideoModel.from_cogvideox(checkpoint, _config(frames_per_step=4))
