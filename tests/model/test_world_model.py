"""ActionToVideoModel: config validation, stages, training, generation, save/load."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from safetensors.torch import load_file

from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.codec import FrameAutoencoder
from vap_env.model.cogvideox.transformer import base_state_dict
from vap_env.model.config import ATTACHMENT_FIELDS

ModelFactory = Callable[..., ActionToVideoModel]
BatchFactory = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_autoencoder() -> FrameAutoencoder:
    torch.manual_seed(0)
    return FrameAutoencoder(latent_channels=4, downsample=4, block_channels=(8, 16), norm_num_groups=4).eval()


def _perturb(model: ActionToVideoModel, seed: int = 0) -> None:
    """Moves every zero-initialised weight (LoRA B, ControlNet projections, state output) off zero."""
    g = _seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "controlnet_blocks" in name or name.startswith("state_embedder.mlp.4"):
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)


# ---------------------------------------------------------------------- config


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError) as error:
        WorldModelConfig(prompt="x")
    assert str(error.value) == (
        "`prompt` must be one of ['skeleton', 'depth_skeleton', 'mask', 'depth', 'state', 'none'], got 'x'"
    )
    with pytest.raises(
        ValueError, match=r"`stage` must be one of \['pretrain', 'control', 'joint'\], got 'fit'"
    ):
        WorldModelConfig(stage="fit")
    with pytest.raises(ValueError, match="`state_dim` must be >= 1 for prompt 'state', got 0"):
        WorldModelConfig(prompt="state")
    with pytest.raises(ValueError, match=r"`controlnet_layers` must be in \[0, 4\], got 5"):
        WorldModelConfig.tiny(controlnet_layers=5)
    with pytest.raises(ValueError, match=r"`controlnet_layers` must be in \[0, 4\], got -1"):
        WorldModelConfig.tiny(prompt="mask", controlnet_layers=-1)
    for prompt in ("skeleton", "depth_skeleton", "mask"):
        assert WorldModelConfig.tiny(prompt=prompt, controlnet_layers=0).controlnet_layers == 0
    with pytest.raises(ValueError, match=r"`control_dropout` must be in \[0, 1\), got 1.0"):
        WorldModelConfig.tiny(control_dropout=1.0)
    with pytest.raises(ValueError, match="`frames_per_step` must be >= 1, got 0"):
        WorldModelConfig.tiny(frames_per_step=0)
    with pytest.raises(ValueError, match="`image_size` must be divisible by `patch_size` 4"):
        WorldModelConfig.tiny(image_size=30, patch_size=4)


def test_tiny_preset_and_json_round_trip() -> None:
    config = WorldModelConfig.tiny()
    assert config.image_size == (64, 64)
    assert (config.num_layers, config.num_attention_heads, config.attention_head_dim) == (4, 4, 32)
    assert (config.controlnet_layers, config.lora_rank, config.context_frames, config.frames_per_step) == (
        2,
        8,
        1,
        1,
    )
    assert config.num_inference_steps <= 8
    assert WorldModelConfig.from_json(config.to_json()) == config
    assert WorldModelConfig.tiny(image_size=(32, 48)).image_size == (32, 48)
    with pytest.raises(ValueError, match=r"unknown WorldModelConfig fields \['colour'\]"):
        WorldModelConfig.from_json(json.dumps({"colour": 1}))


def test_model_rejects_sizes_the_codec_cannot_take(make_config: Callable[..., WorldModelConfig]) -> None:
    with pytest.raises(ValueError, match="divisible by codec spatial factor x patch size = 16"):
        ActionToVideoModel(make_config(image_size=40, patch_size=4), codec=_tiny_autoencoder())


# ---------------------------------------------------------------------- stages


def test_stages_select_trainable_parts(make_model: ModelFactory) -> None:
    model = make_model()
    report = model.trainable_parameters_report()
    assert report["lora"] == 4 * 4 * 8 * (128 + 128)  # 4 blocks x q,k,v,out x rank 8 x (in + out)
    assert report["other"] == 4 * 64  # the null text embedding
    assert min(report.values()) > 0
    model.set_stage("control")
    report = model.trainable_parameters_report()
    assert report["base"] == 0 and report["lora"] > 0 and report["controlnet"] > 0
    for name, param in model.named_parameters():
        expected = name.startswith(("controlnet.", "null_text.")) or ".lora_" in name
        assert param.requires_grad == expected, name
    model.set_stage("pretrain")
    assert model.trainable_parameters_report() == {
        "base": sum(p.numel() for n, p in model.transformer.named_parameters() if ".lora_" not in n),
        "lora": 0,
        "controlnet": 0,
        "other": 256,
    }
    assert not any(p.requires_grad for p in model.codec.parameters())
    with pytest.raises(ValueError, match="`stage` must be one of"):
        model.set_stage("finetune")


def test_control_stage_trains_only_controlnet_and_lora(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = make_model(control_dropout=0.0)
    model.set_stage("control")
    context, target, prompts = make_batch(model, batch_size=4)
    base_before = {k: v.clone() for k, v in base_state_dict(model.transformer).items()}
    lora_before = {k: v.clone() for k, v in model.transformer.named_parameters() if ".lora_" in k}
    loss_before = model.training_loss(context, target, prompts, generator=_seed(123)).item()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(3):
        optimizer.zero_grad()
        model.training_loss(context, target, prompts, generator=_seed(step)).backward()
        optimizer.step()
    loss_after = model.training_loss(context, target, prompts, generator=_seed(123)).item()
    assert loss_after != loss_before
    for key, value in base_state_dict(model.transformer).items():
        assert torch.equal(value, base_before[key]), key
    changed = [
        k
        for k, v in model.transformer.named_parameters()
        if ".lora_" in k and not torch.equal(v, lora_before[k])
    ]
    assert len(changed) == len(lora_before)
    assert all(block.weight.abs().max() > 0 for block in model.controlnet.controlnet_blocks)


def test_control_stage_of_the_ablations_trains_the_right_parts(make_model: ModelFactory) -> None:
    """LoRA only: LoRA + trajectory encoder + projection train, base frozen; ControlNet only: no LoRA."""
    lora_only = make_model(controlnet_layers=0)
    lora_only.set_stage("control")
    controlnet_names = [name for name, _ in lora_only.controlnet.named_parameters()]
    assert all(n.startswith(("trajectory_encoder.", "controlnet_blocks.0.")) for n in controlnet_names)
    assert any(n.startswith("trajectory_encoder.") for n in controlnet_names)
    for name, param in lora_only.named_parameters():
        expected = name.startswith(("controlnet.", "null_text.")) or ".lora_" in name
        assert param.requires_grad == expected, name
    report = lora_only.trainable_parameters_report()
    assert report["base"] == 0 and report["lora"] == 4 * 4 * 8 * (128 + 128)
    assert report["controlnet"] == sum(p.numel() for p in lora_only.controlnet.parameters())

    controlnet_only = make_model(lora_rank=0)
    controlnet_only.set_stage("control")
    assert not any(".lora_" in name for name, _ in controlnet_only.named_parameters())
    for name, param in controlnet_only.named_parameters():
        assert param.requires_grad == name.startswith(("controlnet.", "null_text.")), name
    report = controlnet_only.trainable_parameters_report()
    assert report["base"] == 0 and report["lora"] == 0 and report["controlnet"] > report["other"] > 0
    assert len(controlnet_only.controlnet.transformer_blocks) == 2


def test_lora_only_adapter_starts_as_the_base_then_learns_without_touching_it(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = make_model(controlnet_layers=0, control_dropout=0.0).eval()
    model.set_stage("control")
    context, target, prompts = make_batch(model)
    before = model.generate(context, prompts, generator=_seed(5))
    adapter = model.controlnet
    model.controlnet = None  # the base alone (its LoRA is zero at init)
    assert torch.equal(before, model.generate(context, prompts, generator=_seed(5)))
    model.controlnet = adapter
    assert torch.equal(before, model.generate(context, -prompts, generator=_seed(5)))

    base_before = {k: v.clone() for k, v in base_state_dict(model.transformer).items()}
    params_before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    model.training_loss(context, target, prompts, generator=_seed(0)).backward()
    optimizer.step()
    model.eval()

    after = model.generate(context, prompts, generator=_seed(5))
    assert (after - before).abs().max() > 1e-4
    assert (after - model.generate(context, -prompts, generator=_seed(5))).abs().max() > 1e-4
    for key, value in base_state_dict(model.transformer).items():
        assert torch.equal(value, base_before[key]), key
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, params_before[k])}
    assert all(k.startswith(("controlnet.", "null_text.")) or ".lora_" in k for k in changed), changed
    assert "controlnet.controlnet_blocks.0.weight" in changed
    assert any(".lora_B" in k for k in changed)


def test_controlnet_gets_gradient_signal(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    """At init the prompt cannot matter (zero projections); after one step it does."""
    model = make_model(control_dropout=0.0)
    model.set_stage("control")
    context, target, prompts = make_batch(model)
    other_prompts = -prompts
    same = model.generate(context, prompts, generator=_seed(5))
    assert torch.equal(same, model.generate(context, other_prompts, generator=_seed(5)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.training_loss(context, target, prompts, generator=_seed(0)).backward()
    assert model.controlnet.controlnet_blocks[0].weight.grad.abs().max() > 0
    encoder_weight = model.controlnet.trajectory_encoder.proj_out[1].weight
    assert encoder_weight.grad.abs().max() == 0  # behind the zero projections at first
    optimizer.step()
    moved = model.generate(context, prompts, generator=_seed(5))
    assert (moved - model.generate(context, other_prompts, generator=_seed(5))).abs().max() > 1e-4
    optimizer.zero_grad()
    model.training_loss(context, target, prompts, generator=_seed(1)).backward()
    assert encoder_weight.grad.abs().max() > 0  # and reached once they moved


def test_pretrain_stage_ignores_the_prompts(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model()
    model.set_stage("pretrain")
    context, target, _ = make_batch(model)
    loss = model.training_loss(context, target, None, generator=_seed(0))
    loss.backward()
    assert all(p.grad is None for p in model.controlnet.parameters())
    assert model.transformer.proj_out.weight.grad.abs().max() > 0


# ---------------------------------------------------------------------- training loss


def test_loss_weight_and_context_noise(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model()
    context, target, prompts = make_batch(model)
    plain = model.training_loss(context, target, prompts, generator=_seed(0))
    ones = torch.ones(2, 1, 1, 32, 32)
    assert torch.equal(
        model.training_loss(context, target, prompts, generator=_seed(0), loss_weight=ones), plain
    )
    doubled = model.training_loss(context, target, prompts, generator=_seed(0), loss_weight=2 * ones)
    torch.testing.assert_close(doubled, 2 * plain)
    model.config.context_noise_log_sigma = None
    assert model.training_loss(context, target, prompts, generator=_seed(0)) != plain
    with pytest.raises(ValueError, match=r"`loss_weight` must be \(B, 1, 1, 32, 32\)"):
        model.training_loss(context, target, prompts, loss_weight=torch.ones(2, 1, 32, 32))


def test_loss_weight_is_averaged_onto_the_latent_grid(make_config: Callable[..., WorldModelConfig]) -> None:
    model = ActionToVideoModel(make_config(patch_size=2), codec=_tiny_autoencoder())
    weight = torch.zeros(1, 1, 1, 32, 32)
    weight[..., :4, :2] = 1.0
    latent = model._latent_weight(weight)
    assert latent.shape == (1, 1, 1, 8, 8)
    assert latent[0, 0, 0, 0, 0] == 0.5 and latent.sum() == 0.5


def test_input_shapes_are_checked(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model()
    context, target, prompts = make_batch(model)
    with pytest.raises(
        ValueError, match=r"`prompts` for prompt kind 'skeleton' must have shape \(2, 2, 3, 32, 32\)"
    ):
        model.generate(context, prompts[:, :1])
    with pytest.raises(ValueError, match=r"`context_frames` must be \(B, 1, 3, 32, 32\)"):
        model.training_loss(context[..., :16], target, prompts)


def test_rows_with_control_off_skip_the_controlnet(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = make_model().eval()
    _perturb(model)
    context, _, prompts = make_batch(model)
    latents = torch.randn(2, 2, 3, 32, 32, generator=_seed(1))
    model_input = torch.cat([latents, model._conditioning(context)], dim=2)
    t, text, rope = torch.tensor([500, 500]), model.null_text(2), model._rotary()
    with torch.no_grad():
        mixed = model._predict(model_input, t, text, prompts, torch.tensor([1.0, 0.0]), rope)
        on = model._predict(model_input, t, text, prompts, torch.ones(2), rope)
        off = model._predict(model_input, t, text, None, torch.ones(2), rope)
    torch.testing.assert_close(mixed[0], on[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1], off[1], atol=1e-5, rtol=1e-5)
    assert (on[1] - off[1]).abs().max() > 1e-3


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = make_model(control_dropout=0.0)
    _perturb(model)
    context, target, prompts = make_batch(model)
    model.training_loss(context, target, prompts, generator=_seed(0)).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.transformer.enable_gradient_checkpointing()
    model.controlnet.enable_gradient_checkpointing()
    model.training_loss(context, target, prompts, generator=_seed(0)).backward()
    assert expected.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, param in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(param.grad, expected[name], atol=1e-6, rtol=1e-5)


def test_precomputed_text_embeddings_replace_the_null_text(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = make_model().eval()
    context, target, prompts = make_batch(model)
    null = model.generate(context, prompts, generator=_seed(0))
    text = torch.randn(1, 7, 64, generator=_seed(1))  # any length with RoPE
    with_text = model.generate(context, prompts, generator=_seed(0), text_embeds=text)
    assert (with_text - null).abs().max() > 1e-4
    same = model.generate(
        context, prompts, generator=_seed(0), text_embeds=model.null_text.embedding.detach()
    )
    assert torch.equal(same, null)
    assert torch.isfinite(model.training_loss(context, target, prompts, text_embeds=text.expand(2, -1, -1)))
    with pytest.raises(ValueError, match=r"`text_embeds` must be \(B or 1, L, 64\)"):
        model.generate(context, prompts, text_embeds=torch.zeros(1, 7, 32))


# ---------------------------------------------------------------------- generation


def test_generate_shapes_and_seeding(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model().eval()
    _perturb(model)
    context, _, prompts = make_batch(model, batch_size=3)
    frames = model.generate(context, prompts, generator=_seed(0))
    assert frames.shape == (3, 1, 3, 32, 32) and frames.dtype == torch.float32
    assert frames.min() >= -1 and frames.max() <= 1
    assert torch.equal(frames, model.generate(context, prompts, generator=_seed(0)))
    assert (frames - model.generate(context, prompts, generator=_seed(1))).abs().max() > 1e-2
    guided = model.generate(context, prompts, generator=_seed(0), guidance_scale=3.0, num_inference_steps=2)
    assert guided.shape == frames.shape
    assert (
        guided - model.generate(context, prompts, generator=_seed(0), num_inference_steps=2)
    ).abs().max() > 1e-4


def test_state_and_none_prompt_kinds(make_model: ModelFactory, make_batch: BatchFactory) -> None:
    state_model = make_model(prompt="state", state_dim=5)
    assert state_model.controlnet is None and state_model.state_embedder is not None
    context, target, states = make_batch(state_model)
    assert states.shape == (2, 2, 5)
    state_model.training_loss(context, target, states, generator=_seed(0)).backward()
    assert state_model.state_embedder.mlp[-1].weight.grad.abs().max() > 0
    at_init = state_model.generate(context, states, generator=_seed(0))
    assert torch.equal(
        at_init, state_model.generate(context, -states, generator=_seed(0))
    )  # zero-init output
    _perturb(state_model)
    guided = state_model.generate(context, states, generator=_seed(0), guidance_scale=2.0)
    assert guided.shape == (2, 1, 3, 32, 32)
    assert (state_model.generate(context, -states, generator=_seed(0)) - at_init).abs().max() > 1e-4

    plain = make_model(prompt="none")
    assert plain.controlnet is None and plain.trainable_parameters_report()["controlnet"] == 0
    assert plain.generate(context, None, generator=_seed(0)).shape == (2, 1, 3, 32, 32)
    plain.training_loss(context, target, None, generator=_seed(0)).backward()
    with pytest.raises(ValueError, match="needs a control signal"):
        plain.generate(context, None, guidance_scale=2.0)


def test_latent_codec_with_two_context_frames(make_config: Callable[..., WorldModelConfig]) -> None:
    config = make_config(patch_size=2, context_frames=2, frames_per_step=2)
    torch.manual_seed(0)
    model = ActionToVideoModel(config, codec=_tiny_autoencoder())
    assert (model.num_context_latents, model.num_target_latents) == (2, 2)
    context = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    prompts = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    loss = model.training_loss(
        context, torch.rand(2, 2, 3, 32, 32), prompts, loss_weight=torch.ones(2, 2, 1, 32, 32)
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.generate(context, prompts, generator=_seed(0)).shape == (2, 2, 3, 32, 32)


# ---------------------------------------------------------------------- save / load


@pytest.mark.parametrize(("prompt", "controlnet_layers"), [("skeleton", 2), ("state", 2), ("skeleton", 0)])
def test_save_load_generate_identical(
    prompt: str,
    controlnet_layers: int,
    tmp_path: Path,
    make_config: Callable[..., WorldModelConfig],
    make_batch: BatchFactory,
) -> None:
    torch.manual_seed(0)
    config = make_config(patch_size=2, prompt=prompt, state_dim=3, controlnet_layers=controlnet_layers)
    model = ActionToVideoModel(config, codec=_tiny_autoencoder()).eval()
    _perturb(model)
    model.set_stage("control")
    context, _, prompts = make_batch(model)
    expected = model.generate(context, prompts, generator=_seed(3))
    model.save_pretrained(tmp_path / "wm")
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm").eval()
    assert loaded.config == model.config and loaded.config.stage == "control"
    if prompt == "skeleton":
        assert len(loaded.controlnet.transformer_blocks) == controlnet_layers
    assert loaded.trainable_parameters_report() == model.trainable_parameters_report()
    assert torch.equal(loaded.generate(context, prompts, generator=_seed(3)), expected)
    names = sorted(
        p.relative_to(tmp_path / "wm").as_posix() for p in (tmp_path / "wm").rglob("*") if p.is_file()
    )
    assert "lora/pytorch_lora_weights.safetensors" in names and "extras.safetensors" in names
    assert ("controlnet/diffusion_pytorch_model.safetensors" in names) == (prompt == "skeleton")
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    # transformer/ is a stock diffusers folder holding the base weights without LoRA
    stock = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "wm" / "transformer")
    for key, value in stock.state_dict().items():
        assert torch.equal(value, base_state_dict(model.transformer)[key]), key


def test_without_lora(tmp_path: Path, make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model(lora_rank=0).eval()
    assert model.trainable_parameters_report()["lora"] == 0
    model.save_pretrained(tmp_path / "wm")
    assert not (tmp_path / "wm" / "lora").exists()
    context, _, prompts = make_batch(model)
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm").eval()
    expected = model.generate(context, prompts, generator=_seed(0))
    assert torch.equal(loaded.generate(context, prompts, generator=_seed(0)), expected)


def test_save_is_atomic(tmp_path: Path, make_model: ModelFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model()
    target = tmp_path / "wm"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwriting works
    before = (target / "extras.safetensors").read_bytes()

    def broken(directory: Path) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.codec, "save_pretrained", broken)
    with torch.no_grad():
        model.null_text.embedding.add_(1.0)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save_pretrained(target)
    assert (target / "extras.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]


# ---------------------------------------------------------------------- attaching to a pretrained base


@pytest.fixture(scope="module")
def pretrain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ``pretrain`` model whose base and null text moved away from their initial values."""
    torch.manual_seed(0)
    config = WorldModelConfig.tiny(
        image_size=32, patch_size=4, controlnet_encoder_channels=8, stage="pretrain", control_dropout=0.0
    )
    model = ActionToVideoModel(config)
    g = _seed(7)
    with torch.no_grad():
        for name, param in model.transformer.named_parameters():
            if ".lora_" not in name:
                param.add_(torch.randn(param.shape, generator=g) * 0.02)
        model.null_text.embedding.add_(torch.randn(model.null_text.embedding.shape, generator=g))
    path = tmp_path_factory.mktemp("pretrain") / "wm"
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "attachment",
    [
        {},
        {"prompt": "state", "state_dim": 3},
        {"prompt": "none"},
        {"lora_rank": 0},
        {"controlnet_layers": 0},
        {"prompt": "mask", "prompt_channels": 1, "controlnet_layers": 1, "lora_rank": 4, "lora_alpha": 2.0},
    ],
    ids=["skeleton", "state", "none", "controlnet-only", "lora-only", "mask"],
)
def test_a_new_conditioning_on_a_pretrain_base_starts_as_the_base(
    attachment: dict[str, object], pretrain_model: Path, make_batch: BatchFactory
) -> None:
    pretrained = ActionToVideoModel.from_pretrained(pretrain_model).eval()
    config = dataclasses.replace(pretrained.config, stage="control", **attachment)
    assert set(pretrained.config.architecture_differences(config)) <= set(ATTACHMENT_FIELDS)
    torch.manual_seed(1)
    model = ActionToVideoModel.from_pretrained_base(pretrain_model, config).eval()
    assert model.config == config  # the codec fingerprint is the saved model's

    # the saved base (no LoRA on disk), null text and codec
    saved = load_file(pretrain_model / "transformer" / "diffusion_pytorch_model.safetensors")
    base = base_state_dict(model.transformer)
    assert base.keys() == saved.keys() and all(torch.equal(base[k], saved[k]) for k in saved)
    assert torch.equal(model.null_text.embedding, pretrained.null_text.embedding)
    assert model.config.codec_fingerprint == pretrained.config.codec_fingerprint

    # a fresh attachment, trained in the control stage beside the frozen base
    report = model.trainable_parameters_report()
    assert report["base"] == 0 and (report["lora"] > 0) == (config.lora_rank > 0)
    lora_b = [p for n, p in model.transformer.named_parameters() if ".lora_B" in n]
    assert len(lora_b) == (4 * 4 if config.lora_rank else 0) and not any(p.any() for p in lora_b)
    if config.prompt == "state":
        assert model.state_embedder is not None and model.controlnet is None
    if model.controlnet is not None:
        assert len(model.controlnet.transformer_blocks) == config.controlnet_layers
        for key, value in model.controlnet.state_dict().items():
            if key.startswith("transformer_blocks."):  # copied from the trained base
                assert torch.equal(value, saved[key]), key
    else:
        assert config.prompt not in ("skeleton", "mask")

    # zero-initialised where it meets the base: the output is the pretrain model's
    context, _, prompts = make_batch(model)
    _, _, pretrain_prompts = make_batch(pretrained)
    expected = pretrained.generate(context, pretrain_prompts, generator=_seed(3))
    assert torch.equal(model.generate(context, prompts, generator=_seed(3)), expected)


def test_attaching_needs_a_pretrain_model_of_the_same_architecture(
    pretrain_model: Path, tmp_path: Path
) -> None:
    saved = ActionToVideoModel.from_pretrained(pretrain_model).config
    with pytest.raises(
        ValueError,
        match=r"does not fit the model in .*\(num_layers: saved 4, requested 2, controlnet_layers: saved 2, "
        r"requested 1\); only the attachment fields",
    ):
        ActionToVideoModel.from_pretrained_base(
            pretrain_model, dataclasses.replace(saved, num_layers=2, controlnet_layers=1)
        )
    for field, value in (("image_size", (64, 64)), ("robot", "ur5"), ("frames_per_step", 2)):
        with pytest.raises(ValueError, match=f"does not fit the model .*{field}: saved"):
            ActionToVideoModel.from_pretrained_base(
                pretrain_model, dataclasses.replace(saved, **{field: value})
            )

    torch.manual_seed(0)
    joint = ActionToVideoModel(dataclasses.replace(saved, stage="joint"))
    joint.save_pretrained(tmp_path / "joint")
    with pytest.raises(
        ValueError,
        match=r"\(prompt: saved 'skeleton', requested 'none'\): a new conditioning .* can be attached only "
        r"to the base of a 'pretrain' model, and this one was trained in stage 'joint'",
    ):
        ActionToVideoModel.from_pretrained_base(tmp_path / "joint", dataclasses.replace(saved, prompt="none"))
    with pytest.raises(ValueError, match="only to the base of a 'pretrain' model"):
        ActionToVideoModel.from_pretrained_base(tmp_path / "joint", saved)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = WorldModelConfig.tiny(image_size=32, patch_size=2, controlnet_encoder_channels=8)
    path = tmp_path_factory.mktemp("saved") / "wm"
    ActionToVideoModel(config, codec=_tiny_autoencoder()).save_pretrained(path)
    return path


WEIGHT_FILES = [
    "transformer/diffusion_pytorch_model.safetensors",
    "controlnet/diffusion_pytorch_model.safetensors",
    "lora/pytorch_lora_weights.safetensors",
    "codec/diffusion_pytorch_model.safetensors",
    "extras.safetensors",
]


@pytest.mark.parametrize("damage", ["delete", "truncate"])
@pytest.mark.parametrize("relative", WEIGHT_FILES)
def test_damaged_weight_file_is_named(saved_model: Path, tmp_path: Path, relative: str, damage: str) -> None:
    copy = tmp_path / "wm"
    shutil.copytree(saved_model, copy)
    victim = copy / relative
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(OSError) as error:
        ActionToVideoModel.from_pretrained(copy)
    assert str(victim) in str(error.value)
    reason = (
        "does not exist" if damage == "delete" else "could not load" if "codec" in relative else "corrupt"
    )
    assert reason in str(error.value)


def test_missing_config_is_named(saved_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "wm"
    shutil.copytree(saved_model, copy)
    (copy / "config.json").write_text('{"prompt": "x"}')
    with pytest.raises(ValueError, match="invalid world-model config .*config.json: `prompt` must be one of"):
        ActionToVideoModel.from_pretrained(copy)
    (copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        ActionToVideoModel.from_pretrained(copy)
