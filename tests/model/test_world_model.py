"""ActionToVideoModel: config validation, stages, training, generation (save/load: test_world_model_io.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

from tests.conftest import perturb, tiny_autoencoder
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.cogvideox.transformer import base_state_dict

ModelFactory = Callable[..., ActionToVideoModel]
BatchFactory = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- config


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError) as error:
        WorldModelConfig(prompt="x")
    assert str(error.value) == (
        "`prompt` must be one of ['skeleton', 'depth_skeleton', 'mask', 'depth', 'hull', 'state', 'none'], got 'x'"
    )
    with pytest.raises(
        ValueError, match=r"`stage` must be one of \['pretrain', 'control', 'joint', 'distill'\], got 'fit'"
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
        ActionToVideoModel(make_config(image_size=40, patch_size=4), codec=tiny_autoencoder())


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
    model = ActionToVideoModel(make_config(patch_size=2), codec=tiny_autoencoder())
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
    perturb(model)
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
    perturb(model)
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
    perturb(model)
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


@pytest.mark.parametrize("controlnet_layers", [1, 0])  # copied blocks; adapter mode
@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_generate_encodes_the_prompts_once_and_samples_the_same_bits(
    make_model: ModelFactory,
    make_batch: BatchFactory,
    monkeypatch: pytest.MonkeyPatch,
    controlnet_layers: int,
    guidance_scale: float,
) -> None:
    model = perturb(make_model(controlnet_layers=controlnet_layers, num_inference_steps=3).eval())
    context, _, prompts = make_batch(model, batch_size=3)
    encoder = model.controlnet.trajectory_encoder
    calls = []
    monkeypatch.setattr(encoder, "forward", lambda x, f=encoder.forward: calls.append(x.shape[0]) or f(x))
    lean = model.generate(context, prompts, generator=_seed(0), guidance_scale=guidance_scale)
    assert calls == [3]  # once per call, on the conditional rows, whatever the steps
    # the per-step path: the ControlNet encodes the prompts of its rows again at every step
    predict = model._predict
    monkeypatch.setattr(model, "_predict", lambda *args, trajectory=None: predict(*args))
    calls.clear()
    plain = model.generate(context, prompts, generator=_seed(0), guidance_scale=guidance_scale)
    assert calls == [3] * (1 + 3)  # the tokens it now ignores, then once a step
    assert torch.equal(lean, plain)


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
    perturb(state_model)
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
    model = ActionToVideoModel(config, codec=tiny_autoencoder())
    assert (model.num_context_latents, model.num_target_latents) == (2, 2)
    context = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    prompts = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    loss = model.training_loss(
        context, torch.rand(2, 2, 3, 32, 32), prompts, loss_weight=torch.ones(2, 2, 1, 32, 32)
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.generate(context, prompts, generator=_seed(0)).shape == (2, 2, 3, 32, 32)


# ---------------------------------------------------------------------- the `change` target


def test_change_target_is_the_scaled_change_from_the_context_the_model_sees(
    make_model: ModelFactory,
) -> None:
    model = make_model(context_frames=2, target="change", change_scale=4.0)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 3, 3, 32, 32, generator=g)  # 2 context latents + 1 target (pixel codec)
    context = latents[:, :2] + 0.1 * torch.randn(3, 2, 3, 32, 32, generator=g)  # noised, as in training
    sample = model.to_target(latents, context)
    assert torch.equal(sample[:, :2], latents[:, :2])
    assert torch.allclose(sample[:, 2], (latents[:, 2] - context[:, 1]) * 4.0)
    assert torch.allclose(model.from_target(sample, context), latents, atol=1e-6)
    frame_model = make_model(context_frames=2)
    assert frame_model.to_target(latents, context) is latents
    unmeasured = make_model(target="change")
    with pytest.raises(ValueError, match="no `change_scale`: it is measured on the training clips"):
        unmeasured.to_target(latents[:, 1:], context[:, 1:])


def test_a_change_model_that_predicts_no_change_repeats_the_last_context_frame(
    make_model: ModelFactory, make_batch: BatchFactory
) -> None:
    # A network whose output is zero predicts a clean sample of zero from pure noise (zero terminal SNR) in
    # one DDIM step: the frame model then generates the codec's zero (grey), the change model the last
    # context frame, whatever the noise.
    frames = {}
    for target in ("frame", "change"):
        model = make_model(context_frames=2, target=target, change_scale=3.0).eval()
        with torch.no_grad():
            model.transformer.proj_out.weight.zero_()
            model.transformer.proj_out.bias.zero_()
        context, _, prompts = make_batch(model, batch_size=2)
        frames[target] = model.generate(context, prompts, num_inference_steps=1, generator=_seed(1))
    assert torch.allclose(frames["change"][:, 0], context[:, 1], atol=1e-5)
    assert frames["frame"].abs().max() < 1e-5


def test_target_and_change_scale_are_validated_and_old_configs_load_as_frame_models() -> None:
    with pytest.raises(ValueError, match=r"`target` must be one of \['frame', 'change'\], got 'delta'"):
        WorldModelConfig.tiny(target="delta")
    with pytest.raises(ValueError, match="`change_scale` must be > 0 or None"):
        WorldModelConfig.tiny(target="change", change_scale=0.0)
    saved = json.loads(WorldModelConfig.tiny().to_json())
    del saved["target"], saved["change_scale"]  # a config written before the fields existed
    old = WorldModelConfig.from_json(json.dumps(saved))
    assert (old.target, old.change_scale) == ("frame", None)
