"""Codecs: shapes, ranges, scaling, per-frame independence, save/load and load errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX

from vap_env.model.codec import (
    CogVideoXVAECodec,
    FrameAutoencoder,
    PixelCodec,
    frames_to_tensor,
    load_codec,
    tensor_to_frames,
)


def _frames(batch: int, num_frames: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_frames, 3, size, size, generator=g) * 2 - 1


def _tiny_frame_autoencoder(downsample: int = 4, seed: int = 0) -> FrameAutoencoder:
    torch.manual_seed(seed)
    return FrameAutoencoder(
        latent_channels=4, downsample=downsample, block_channels=(8, 16, 16), norm_num_groups=4
    ).eval()


def _tiny_cogvideox_codec(seed: int = 0, sample_posterior: bool = False) -> CogVideoXVAECodec:
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_height=32,
        sample_width=32,
    )
    return CogVideoXVAECodec(vae, sample_posterior=sample_posterior).eval()


def test_pixel_codec_is_the_identity() -> None:
    codec = PixelCodec()
    frames = _frames(2, 3, 16)
    latents = codec.encode(frames)
    assert latents is frames
    assert torch.equal(codec.decode(latents), frames)
    assert codec.decode(frames * 3).abs().max() == 1.0
    assert codec.latent_shape(3, 16, 24) == (3, 3, 16, 24)


@pytest.mark.parametrize(("downsample", "latent_side"), [(4, 8), (8, 4)])
def test_frame_autoencoder_round_trip_shapes_and_range(downsample: int, latent_side: int) -> None:
    codec = _tiny_frame_autoencoder(downsample)
    frames = _frames(2, 3, 32)
    with torch.no_grad():
        latents = codec.encode(frames)
        decoded = codec.decode(latents)
    assert latents.shape == (2, 3, 4, latent_side, latent_side) == (2, *codec.latent_shape(3, 32, 32))
    assert decoded.shape == frames.shape and decoded.dtype == torch.float32
    assert decoded.min() >= -1.0 and decoded.max() <= 1.0
    assert (codec.spatial_factor, codec.temporal_factor) == (downsample, 1)


def test_frame_autoencoder_encodes_each_frame_on_its_own() -> None:
    codec = _tiny_frame_autoencoder()
    frames = _frames(1, 4, 32)
    with torch.no_grad():
        clip = codec.encode(frames)
        alone = torch.cat([codec.encode(frames[:, t : t + 1]) for t in range(4)], dim=1)
    torch.testing.assert_close(clip, alone, rtol=1e-5, atol=1e-5)


def test_fit_latent_scale_gives_unit_variance_latents() -> None:
    codec = _tiny_frame_autoencoder()
    images = _frames(1, 40, 32, seed=1)[0]
    scale, shift = codec.fit_latent_scale(images, batch_size=16)
    assert codec.config.scaling_factor == scale and codec.config.shift_factor == shift
    with torch.no_grad():
        latents = codec.encode(images[None])
    assert latents.std().item() == pytest.approx(1.0, abs=1e-3)
    assert latents.mean().item() == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        raw = codec.encode_images(images)
    torch.testing.assert_close(
        codec.decode(latents)[0], codec.decode_images(raw).clamp(-1, 1), rtol=0, atol=1e-4
    )


def test_cogvideox_codec_compresses_9_frames_into_3() -> None:
    codec = _tiny_cogvideox_codec()
    frames = _frames(2, 9, 32)
    with torch.no_grad():
        latents = codec.encode(frames)
        decoded = codec.decode(latents)
        mode = codec.vae.encode(frames.permute(0, 2, 1, 3, 4)).latent_dist.mode()
    assert latents.shape == (2, 3, 4, 4, 4) == (2, *codec.latent_shape(9, 32, 32))
    torch.testing.assert_close(latents, mode.permute(0, 2, 1, 3, 4) * codec.vae.config.scaling_factor)
    assert decoded.shape == (2, 9, 3, 32, 32) and decoded.dtype == torch.float32
    assert decoded.min() >= -1.0 and decoded.max() <= 1.0
    assert codec.num_frames(3) == 9


def test_cogvideox_codec_posterior_sampling_follows_the_generator() -> None:
    codec = _tiny_cogvideox_codec(sample_posterior=True)
    frames = _frames(1, 5, 32)
    with torch.no_grad():
        a = codec.encode(frames, generator=torch.Generator().manual_seed(3))
        b = codec.encode(frames, generator=torch.Generator().manual_seed(3))
        c = codec.encode(frames, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_latent_shape_errors() -> None:
    with pytest.raises(ValueError, match="divisible by 4, got 30x32"):
        _tiny_frame_autoencoder(4).latent_shape(1, 30, 32)
    with pytest.raises(ValueError, match=r"4k \+ 1 \(1, 5, 9, \.\.\.\), got 8"):
        _tiny_cogvideox_codec().latent_shape(8, 32, 32)
    with pytest.raises(ValueError, match="divisible by 8"):
        _tiny_cogvideox_codec().latent_shape(9, 36, 32)
    with pytest.raises(ValueError, match="`num_frames` must be positive"):
        PixelCodec().latent_shape(0, 8, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        _tiny_frame_autoencoder(4).encode(_frames(1, 1, 30))
    with pytest.raises(ValueError, match="floating point"):
        PixelCodec().encode(torch.zeros(1, 1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, T', 4, h, w\)"):
        _tiny_frame_autoencoder().decode(torch.zeros(1, 1, 3, 8, 8))


def test_frame_autoencoder_argument_errors() -> None:
    with pytest.raises(ValueError, match="`downsample` must be a power of two"):
        FrameAutoencoder(downsample=6)
    with pytest.raises(ValueError, match="at least log2"):
        FrameAutoencoder(downsample=16, block_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="`norm_num_groups`"):
        FrameAutoencoder(block_channels=(12, 16), norm_num_groups=8)


@pytest.mark.parametrize("make", [_tiny_frame_autoencoder, _tiny_cogvideox_codec, PixelCodec])
def test_save_and_load_give_identical_latents(make, tmp_path: Path) -> None:
    codec = make()
    if isinstance(codec, FrameAutoencoder):
        codec.fit_latent_scale(_frames(1, 8, 32)[0])
    codec.save_pretrained(tmp_path / "codec")
    loaded = load_codec(tmp_path / "codec")
    assert type(loaded) is type(codec)
    frames = _frames(1, 5, 32, seed=2)
    with torch.no_grad():
        latents, loaded_latents = codec.encode(frames), loaded.encode(frames)
        assert torch.equal(latents, loaded_latents)
        assert torch.equal(codec.decode(latents), loaded.decode(latents))


def test_load_codec_reads_the_vae_of_a_whole_cogvideox_checkpoint(tmp_path: Path) -> None:
    _tiny_cogvideox_codec().save_pretrained(tmp_path / "checkpoint" / "vae")
    assert isinstance(load_codec(tmp_path / "checkpoint"), CogVideoXVAECodec)


def test_load_codec_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_codec(tmp_path / "nowhere")
    directory = tmp_path / "codec"
    _tiny_frame_autoencoder().save_pretrained(directory)
    weights = directory / "diffusion_pytorch_model.safetensors"

    weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(OSError, match=str(weights)):
        load_codec(directory)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=str(weights)):
        load_codec(directory)

    config = directory / "config.json"
    config.write_text("{ truncated")
    with pytest.raises(ValueError, match=f"corrupt codec config {config}"):
        load_codec(directory)
    config.write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="names codec class 'UNet2DModel'"):
        load_codec(directory)


def test_uint8_frame_conversions_round_trip() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 10, 3), dtype=np.uint8)
    tensor = frames_to_tensor(frames)
    assert tensor.shape == (2, 3, 3, 8, 10) and tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(tensor_to_frames(tensor), frames)
    with pytest.raises(ValueError, match="uint8"):
        frames_to_tensor(frames.astype(np.float32))
