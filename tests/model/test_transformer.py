"""ControlledCogVideoXTransformer against the stock diffusers model; the RoPE helper against the pipeline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel
from peft import LoraConfig

from vap_env.model.cogvideox.transformer import (
    ControlledCogVideoXTransformer,
    base_state_dict,
    rotary_embedding,
)

TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=8,
    out_channels=4,
    time_embed_dim=32,
    text_embed_dim=24,
    num_layers=3,
    sample_width=8,
    sample_height=8,
    sample_frames=9,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=6,
)


def _pair(**overrides: object) -> tuple[CogVideoXTransformer3DModel, ControlledCogVideoXTransformer]:
    config = {**TINY, **overrides}
    torch.manual_seed(0)
    stock = CogVideoXTransformer3DModel(**config).eval()
    controlled = ControlledCogVideoXTransformer(**config).eval()
    controlled.load_state_dict(stock.state_dict())
    return stock, controlled


def _inputs(batch_size: int = 2, num_frames: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(batch_size, num_frames, 8, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch_size, 6, 24, generator=g),
        timestep=torch.tensor([10, 700][:batch_size]),
    )


def _rope(
    model: CogVideoXTransformer3DModel, num_frames: int = 3
) -> tuple[torch.Tensor, torch.Tensor] | None:
    return rotary_embedding(model.config, 8, 8, num_frames, torch.device("cpu"))


@pytest.mark.parametrize("rotary", [True, False])
def test_forward_without_extras_equals_stock_exactly(rotary: bool) -> None:
    stock, controlled = _pair(use_rotary_positional_embeddings=rotary)
    inputs = _inputs()
    rope = _rope(stock) if rotary else None
    with torch.no_grad():
        expected = stock(**inputs, image_rotary_emb=rope).sample
        got = controlled(**inputs, image_rotary_emb=rope).sample
    assert got.shape == (2, 3, 4, 8, 8)
    assert torch.equal(got, expected)


def test_forward_equals_stock_with_lora_and_zero_extras() -> None:
    stock, controlled = _pair(use_rotary_positional_embeddings=True)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    stock.add_adapter(lora)
    controlled.add_adapter(lora)
    with torch.no_grad():  # make LoRA non-trivial (B starts at zero), then share every weight
        for name, p in stock.named_parameters():
            if "lora_B" in name:
                p.normal_(generator=torch.Generator().manual_seed(len(name)))
    controlled.load_state_dict(stock.state_dict())
    inputs = _inputs()
    rope = _rope(stock)
    zeros = [torch.zeros(2, 3 * 16, 32)] * 3
    with torch.no_grad():
        expected = stock(**inputs, image_rotary_emb=rope, attention_kwargs={"scale": 0.5}).sample
        got = controlled(
            **inputs,
            image_rotary_emb=rope,
            attention_kwargs={"scale": 0.5},
            controlnet_block_samples=zeros,
            added_time_embedding=torch.zeros(2, 32),
        ).sample
    assert torch.equal(got, expected)


def test_block_samples_are_added_after_each_block_like_a_forward_hook() -> None:
    stock, controlled = _pair(use_rotary_positional_embeddings=True)
    inputs = _inputs()
    rope = _rope(stock)
    g = torch.Generator().manual_seed(2)
    samples = [torch.randn(2, 3 * 16, 32, generator=g) for _ in range(2)]  # fewer than the 3 blocks
    scale = 0.7

    def add_residual(i: int):  # the hook alternative to subclassing, as a reference
        def hook(module, args, kwargs, output):
            return output[0] + samples[i] * scale, output[1]

        return hook

    handles = [
        stock.transformer_blocks[i].register_forward_hook(add_residual(i), with_kwargs=True) for i in range(2)
    ]
    with torch.no_grad():
        expected = stock(**inputs, image_rotary_emb=rope).sample
        got = controlled(
            **inputs,
            image_rotary_emb=rope,
            controlnet_block_samples=samples,
            controlnet_conditioning_scale=scale,
        ).sample
        plain = controlled(**inputs, image_rotary_emb=rope).sample
    for handle in handles:
        handle.remove()
    assert torch.equal(got, expected)
    assert (got - plain).abs().max() > 1e-3


def test_per_sample_scale_and_added_time_embedding() -> None:
    _, controlled = _pair(use_rotary_positional_embeddings=True)
    inputs = _inputs()
    rope = _rope(controlled)
    g = torch.Generator().manual_seed(3)
    samples = [torch.randn(2, 3 * 16, 32, generator=g) for _ in range(3)]
    with torch.no_grad():
        plain = controlled(**inputs, image_rotary_emb=rope).sample
        half = controlled(
            **inputs,
            image_rotary_emb=rope,
            controlnet_block_samples=samples,
            controlnet_conditioning_scale=torch.tensor([1.0, 0.0]),
        ).sample
        timed = controlled(
            **inputs, image_rotary_emb=rope, added_time_embedding=torch.randn(2, 32, generator=g)
        )
    assert torch.equal(half[1], plain[1])  # scale 0: that sample is untouched
    assert (half[0] - plain[0]).abs().max() > 1e-3
    assert (timed.sample - plain).abs().max() > 1e-3


def test_too_many_block_samples_is_an_error() -> None:
    _, controlled = _pair()
    with pytest.raises(ValueError, match="4 ControlNet block samples for 3 transformer blocks"):
        controlled(**_inputs(), controlnet_block_samples=[torch.zeros(2, 48, 32)] * 4)


@pytest.mark.parametrize("patch_size_t", [None, 2])
@pytest.mark.parametrize("grid", [(8, 8), (6, 10)])
def test_rotary_embedding_matches_the_pipeline(patch_size_t: int | None, grid: tuple[int, int]) -> None:
    config = CogVideoXTransformer3DModel(
        **{**TINY, "sample_height": 12, "sample_width": 16},
        patch_size_t=patch_size_t,
        use_rotary_positional_embeddings=True,
    ).config
    vae_factor = 8
    fake_pipeline = SimpleNamespace(
        vae_scale_factor_spatial=vae_factor, transformer=SimpleNamespace(config=config)
    )
    cos, sin = CogVideoXImageToVideoPipeline._prepare_rotary_positional_embeddings(
        fake_pipeline, grid[0] * vae_factor, grid[1] * vae_factor, 4, torch.device("cpu")
    )
    got_cos, got_sin = rotary_embedding(config, grid[0], grid[1], 4, torch.device("cpu"))
    assert torch.equal(got_cos, cos) and torch.equal(got_sin, sin)
    frames = 4 if patch_size_t is None else 2
    assert cos.shape == (frames * grid[0] * grid[1] // 4, 16)


def test_rotary_embedding_is_none_without_rope() -> None:
    config = CogVideoXTransformer3DModel(**TINY).config
    assert rotary_embedding(config, 8, 8, 3, torch.device("cpu")) is None


def test_base_state_dict_strips_lora() -> None:
    stock, controlled = _pair()
    controlled.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"]))
    plain = base_state_dict(controlled)
    assert not any("lora" in k or "base_layer" in k for k in plain)
    fresh = CogVideoXTransformer3DModel(**TINY)
    fresh.load_state_dict(plain, strict=True)
    for key, value in stock.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
