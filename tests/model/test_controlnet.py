"""CogVideoXControlNet, its trajectory encoder, the state embedder and the null text embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vap_env.model.cogvideox.controlnet import (
    CogVideoXControlNet,
    CogVideoXControlNetOutput,
    NullTextEmbedding,
    StateEmbedding,
    TrajectoryEncoder,
)
from vap_env.model.cogvideox.transformer import ControlledCogVideoXTransformer, rotary_embedding

TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=6,
    out_channels=3,
    time_embed_dim=32,
    text_embed_dim=24,
    num_layers=3,
    sample_width=32,
    sample_height=32,
    sample_frames=2,
    patch_size=4,
    temporal_compression_ratio=1,
    max_text_seq_length=5,
    use_rotary_positional_embeddings=True,
)


@pytest.fixture
def transformer() -> ControlledCogVideoXTransformer:
    torch.manual_seed(0)
    return ControlledCogVideoXTransformer(**TINY).eval()


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(2, 2, 6, 32, 32, generator=g),
        encoder_hidden_states=torch.randn(2, 5, 24, generator=g),
        timestep=torch.tensor([3, 900]),
    )


def test_from_transformer_copies_embeddings_and_first_blocks(
    transformer: ControlledCogVideoXTransformer,
) -> None:
    controlnet = CogVideoXControlNet.from_transformer(transformer, 2, 3, spatial_stride=4, temporal_stride=1)
    assert len(controlnet.transformer_blocks) == 2 and controlnet.config.num_layers == 2
    base = transformer.state_dict()
    for key, value in controlnet.state_dict().items():
        if key.startswith(("trajectory_encoder.", "controlnet_blocks.")):
            continue
        assert torch.equal(value, base[key]), key
    for projection in controlnet.controlnet_blocks:
        assert not projection.weight.any() and not projection.bias.any()
    random = CogVideoXControlNet.from_transformer(
        transformer, 2, 3, spatial_stride=4, temporal_stride=1, load_weights_from_transformer=False
    )
    assert not torch.equal(
        random.transformer_blocks[0].ff.net[2].weight, base["transformer_blocks.0.ff.net.2.weight"]
    )
    for wrong in (4, -1):
        with pytest.raises(
            ValueError, match=rf"`num_layers` must be in \[0, 3\] for this transformer, got {wrong}"
        ):
            CogVideoXControlNet.from_transformer(transformer, wrong, 3, spatial_stride=4, temporal_stride=1)


def test_zero_initialised_controlnet_leaves_the_base_unchanged_exactly(
    transformer: ControlledCogVideoXTransformer,
) -> None:
    controlnet = CogVideoXControlNet.from_transformer(
        transformer, 2, 3, spatial_stride=4, temporal_stride=1
    ).eval()
    inputs = _inputs()
    rope = rotary_embedding(transformer.config, 32, 32, 2, torch.device("cpu"))
    prompt = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = controlnet(**inputs, prompt_video=prompt, image_rotary_emb=rope)
        assert isinstance(out, CogVideoXControlNetOutput)
        assert [s.shape for s in out.controlnet_block_samples] == [(2, 128, 32)] * 2
        alone = transformer(**inputs, image_rotary_emb=rope).sample
        both = transformer(
            **inputs, image_rotary_emb=rope, controlnet_block_samples=out.controlnet_block_samples
        ).sample
        assert torch.equal(both, alone)
        # with trained (non-zero) projections, the residuals depend on the prompt
        for projection in controlnet.controlnet_blocks:
            torch.nn.init.normal_(projection.weight, std=0.02)
        first = controlnet(**inputs, prompt_video=prompt, image_rotary_emb=rope, return_dict=False)[0]
        second = controlnet(**inputs, prompt_video=-prompt, image_rotary_emb=rope, return_dict=False)[0]
    assert (first[-1] - second[-1]).abs().max() > 1e-4


def test_adapter_mode_holds_only_the_encoder_and_one_zero_projection(
    transformer: ControlledCogVideoXTransformer, tmp_path: Path
) -> None:
    """``num_layers=0``: no copied embeddings or blocks; one residual, zero at init, needing no timestep."""
    torch.manual_seed(2)
    adapter = CogVideoXControlNet.from_transformer(transformer, 0, 3, spatial_stride=4, temporal_stride=1)
    assert adapter.config.num_layers == 0 and len(adapter.transformer_blocks) == 0
    assert len(adapter.controlnet_blocks) == 1
    assert adapter.patch_embed is None and adapter.time_embedding is None
    names = [name for name, _ in adapter.named_parameters()]
    assert names and all(n.startswith(("trajectory_encoder.", "controlnet_blocks.0.")) for n in names), names
    projection = adapter.controlnet_blocks[0]
    assert not projection.weight.any() and not projection.bias.any()

    inputs = _inputs()
    rope = rotary_embedding(transformer.config, 32, 32, 2, torch.device("cpu"))
    prompt = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = adapter(inputs["hidden_states"], None, None, prompt)
        assert isinstance(out, CogVideoXControlNetOutput)
        assert [s.shape for s in out.controlnet_block_samples] == [(2, 128, 32)]
        alone = transformer(**inputs, image_rotary_emb=rope).sample
        both = transformer(
            **inputs, image_rotary_emb=rope, controlnet_block_samples=out.controlnet_block_samples
        ).sample
        assert torch.equal(both, alone)
        torch.nn.init.normal_(projection.weight, std=0.02)
        first = adapter(**inputs, prompt_video=prompt, return_dict=False)[0]
        second = adapter(**inputs, prompt_video=-prompt, return_dict=False)[0]
        assert len(first) == 1 and (first[0] - second[0]).abs().max() > 1e-4
        moved = transformer(**inputs, image_rotary_emb=rope, controlnet_block_samples=first).sample
        assert (moved - alone).abs().max() > 1e-6

    # every parameter takes part in the forward (nothing unused for DDP)
    adapter(inputs["hidden_states"], None, None, prompt).controlnet_block_samples[0].square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in adapter.parameters())

    # save / load round trip
    adapter.save_pretrained(tmp_path / "adapter")
    loaded = CogVideoXControlNet.from_pretrained(tmp_path / "adapter")
    assert loaded.config.num_layers == 0 and loaded.patch_embed is None
    with torch.no_grad():
        again = loaded(inputs["hidden_states"], None, None, prompt).controlnet_block_samples
        expected = adapter(inputs["hidden_states"], None, None, prompt).controlnet_block_samples
    assert torch.equal(again[0], expected[0])

    with pytest.raises(ValueError, match="do not match the patch tokens"):
        adapter(inputs["hidden_states"], None, None, torch.zeros(2, 3, 3, 32, 32))
    full = CogVideoXControlNet.from_transformer(transformer, 1, 3, spatial_stride=4, temporal_stride=1)
    with pytest.raises(ValueError, match="needs the timestep and the text embeddings"):
        full(inputs["hidden_states"], inputs["encoder_hidden_states"], None, prompt)


def test_mismatched_prompt_video_is_an_error(transformer: ControlledCogVideoXTransformer) -> None:
    controlnet = CogVideoXControlNet.from_transformer(transformer, 1, 3, spatial_stride=4, temporal_stride=1)
    with pytest.raises(ValueError, match="do not match the patch tokens"):
        controlnet(**_inputs(), prompt_video=torch.zeros(2, 3, 3, 32, 32))


@pytest.mark.parametrize(
    ("spatial", "temporal", "frames", "size", "expected"),
    [
        (4, 1, 2, (32, 32), (2, 2 * 8 * 8, 40)),
        (16, 4, 9, (32, 48), (2, 3 * 2 * 3, 40)),
        (6, 1, 1, (12, 18), (2, 6, 40)),
    ],
)
def test_trajectory_encoder_token_grid(
    spatial: int, temporal: int, frames: int, size: tuple[int, int], expected: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(3, 40, spatial, temporal, base_channels=4)
    assert encoder(torch.zeros(2, frames, 3, *size)).shape == expected
    with pytest.raises(ValueError, match="does not fit strides"):
        encoder(torch.zeros(2, frames, 3, size[0] + 1, size[1]))


def test_trajectory_tokens_are_spatially_aligned() -> None:
    """A change in the top-left patch moves the top-left token, not the far corner's."""
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(3, 8, spatial_stride=4, temporal_stride=1, base_channels=4)
    video = torch.zeros(1, 1, 3, 32, 32)
    poked = video.clone()
    poked[..., :4, :4] = 1.0
    with torch.no_grad():
        delta = (encoder(poked) - encoder(video)).abs().sum(-1).view(8, 8)
    assert delta[0, 0] > 1e-4
    assert delta[4:, 4:].max() == 0


@pytest.mark.parametrize("unshuffle", [2, 4])
def test_unshuffled_trajectory_encoder_keeps_the_grid_the_alignment_and_every_pixel(unshuffle: int) -> None:
    """Space-to-depth first: same token grid; a one-pixel change inside a token moves that token only."""
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(
        3, 8, spatial_stride=8, temporal_stride=1, base_channels=4, unshuffle=unshuffle
    )
    assert encoder.spatial[0].in_channels == 3 * unshuffle**2
    video = torch.zeros(1, 1, 3, 32, 32)
    for y, x in [(0, 0), (3, 5), (7, 7)]:  # every pixel position inside the top-left 8x8 token reaches it
        poked = video.clone()
        poked[..., y, x] = 1.0
        with torch.no_grad():
            delta = (encoder(poked) - encoder(video)).abs().sum(-1).view(4, 4)
        assert delta[0, 0] > 1e-5
        assert delta[2:, 2:].max() == 0
    with pytest.raises(ValueError, match="`unshuffle` must be >= 1 and divide the spatial stride 8, got 3"):
        TrajectoryEncoder(3, 8, spatial_stride=8, temporal_stride=1, base_channels=4, unshuffle=3)


def test_state_embedding_starts_at_zero_and_checks_shapes() -> None:
    torch.manual_seed(0)
    embed = StateEmbedding(num_frames=2, state_dim=7, embed_dim=32, hidden_dim=16)
    states = torch.randn(3, 2, 7)
    assert torch.equal(embed(states), torch.zeros(3, 32))
    torch.nn.init.normal_(embed.mlp[-1].weight)
    assert embed(states).abs().max() > 0
    with pytest.raises(ValueError, match=r"states must be \(B, 2, 7\)"):
        embed(torch.randn(3, 3, 7))


def test_null_text_embedding() -> None:
    init = torch.randn(1, 4, 24)
    null = NullTextEmbedding(4, 24, init)
    assert null(3).shape == (3, 4, 24) and torch.equal(null(3)[2], init[0])
    assert null.embedding.requires_grad
    with pytest.raises(ValueError, match=r"`init` must have shape \(1, 5, 24\)"):
        NullTextEmbedding(5, 24, init)
