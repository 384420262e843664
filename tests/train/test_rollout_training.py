"""Training on the model's own rollouts: the clips it needs, the rollout itself, and the trainer around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.test_world_model_trainer import fast_config, tiny_config
from vap_env.model.codec import FrameAutoencoder
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.train.clips import ClipConfig, ClipDataset
from vap_env.train.latent_clips import LatentClips
from vap_env.train.model_setup import DiffusionLoss
from vap_env.train.splits import split_episodes
from vap_env.train.validation import evaluation_batch
from vap_env.train.world_model_trainer import train_world_model


def _codec() -> FrameAutoencoder:
    torch.manual_seed(0)
    codec = FrameAutoencoder(latent_channels=4, block_channels=(8, 16), norm_num_groups=4).eval()
    codec.fit_latent_scale(torch.rand(16, 3, 32, 32) * 2 - 1)
    return codec


def test_rollout_clips_hold_the_frames_before_the_context_and_the_same_targets(
    episodes_dir: Path,
) -> None:
    episodes = list(split_episodes(episodes_dir, val_episodes=1)[0])[:2]
    plain = ClipDataset(episodes, ClipConfig(context_frames=2))
    rollout = ClipDataset(episodes, ClipConfig(context_frames=2, rollout_frames=3))
    # the same clips, one per target frame; each carries 3 more frames (and prompts) before its target
    assert len(rollout) == len(plain)
    for i in (0, 1, 5, len(plain) - 1):
        a, b = plain[i], rollout[i]
        assert torch.equal(a["target"], b["target"]) and torch.equal(a["weight"], b["weight"])
        assert b["context"].shape[0] == 5 and b["prompts"].shape[0] == 6
        assert torch.equal(b["context"][-2:], a["context"]) and torch.equal(b["prompts"][-3:], a["prompts"])
    # the first clip (target = frame 1) repeats frame 0 in every place before the episode, as a reset does
    first = rollout[0]
    assert all(torch.equal(first["context"][k], first["context"][-1]) for k in range(5))
    # validation evaluates the model's step from recorded context: the rollout frames are cut off
    batch = evaluation_batch(rollout, 4)
    reference = evaluation_batch(plain, 4)
    assert all(torch.equal(batch[k], reference[k]) for k in reference)
    with pytest.raises(ValueError, match="`rollout_frames` must be >= 0, got -1"):
        ClipConfig(rollout_frames=-1)


def test_rollout_context_replaces_the_last_context_frames_by_the_models_own_decoded_rollout() -> None:
    torch.manual_seed(1)
    model = ActionToVideoModel(tiny_config(patch_size=2, context_frames=2), codec=_codec()).eval()
    batch, rollout = 3, 2
    latents = torch.randn(batch, 2 + rollout + 1, 4, 8, 8)
    prompts = torch.rand(batch, 2 + rollout + 1, 3, 32, 32) * 2 - 1

    # fraction 0: the recorded clip's last Tc + Tf frames, untouched
    kept, kept_prompts = model.rollout_context(latents, prompts, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(kept, latents[:, rollout:]) and torch.equal(kept_prompts, prompts[:, rollout:])

    # fraction 1: frame 2 from recorded frames 0-1, frame 3 from recorded 1 and generated 2, both decoded and
    # re-encoded; the target (frame 4) stays recorded
    out, out_prompts = model.rollout_context(latents, prompts, 1.0, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    torch.rand(batch, generator=generator)  # the per-row draw comes first
    expected = latents.clone()
    with torch.no_grad():
        for t in (2, 3):
            generated = model.generate_latents(
                expected[:, t - 2 : t], prompts[:, t - 2 : t + 1], generator=generator
            )
            expected[:, t : t + 1] = model.codec.encode(model.codec.decode(generated))
    torch.testing.assert_close(out, expected[:, rollout:])
    assert torch.equal(out[:, -1], latents[:, -1]) and torch.equal(out_prompts, prompts[:, rollout:])
    # a rollout really changes the context: the generated frame is not the recorded one
    assert (out[:, :2] - latents[:, 2:4]).abs().mean() > 0.1
    # no gradient flows through it
    assert not out.requires_grad

    # a fraction picks rows: those not drawn keep their recorded context exactly
    mixed, _ = model.rollout_context(latents, prompts, 0.5, torch.Generator().manual_seed(0))
    drawn = torch.rand(batch, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < int(drawn.sum()) < batch
    for row in range(batch):
        assert torch.equal(mixed[row], latents[row, rollout:]) != bool(drawn[row])

    with pytest.raises(ValueError, match="a rollout needs more than the model's 3"):
        model.rollout_context(latents[:, 2:], prompts[:, 2:], 1.0)


def test_generate_is_the_latent_rollout_decoded() -> None:
    torch.manual_seed(2)
    model = ActionToVideoModel(tiny_config(patch_size=2), codec=_codec()).eval()
    context = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    prompts = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        frames = model.generate(context, prompts, generator=torch.Generator().manual_seed(4))
        latents = model.generate_latents(
            model.codec.encode(context), prompts, generator=torch.Generator().manual_seed(4)
        )
        torch.testing.assert_close(frames, model.codec.decode(latents).float())
        with pytest.raises(ValueError, match=r"`context` must be \(B, 1, 4, 8, 8\), got \(2, 1, 4, 4, 4\)"):
            model.generate_latents(torch.zeros(2, 1, 4, 4, 4), prompts)


def test_trainer_trains_on_rollouts_and_refuses_them_where_they_do_not_apply(
    episodes_dir: Path,
    tmp_path: Path,
) -> None:
    config = tiny_config(num_layers=1, controlnet_layers=1, num_inference_steps=2)
    train = fast_config(steps=3, rollout_fraction=0.5, rollout_frames=2)
    result = train_world_model(episodes_dir, tmp_path / "run", config, train)
    assert result["step"] == 3 and torch.isfinite(torch.tensor(result["loss"]))
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["train"]["rollout_fraction"] == 0.5 and saved["train"]["rollout_frames"] == 2
    # the same clips as a plain run: the rollout frames are extra frames of each clip, not extra clips
    assert saved["clips"] == json.loads(
        (Path(train_world_model(episodes_dir, tmp_path / "plain", config, fast_config(steps=1))["model_dir"]).parent
         / "train_config.json").read_text()
    )["clips"]  # fmt: skip
    with pytest.raises(ValueError, match="is for the `joint` and `control` stages, not `pretrain`"):
        train_world_model(episodes_dir, tmp_path / "pre", tiny_config(stage="pretrain", prompt="none"), train)
    with pytest.raises(ValueError, match=r"`rollout_fraction` must be in \[0, 1\]"):
        fast_config(rollout_fraction=1.5)


def test_a_temporal_codec_is_refused_for_rollouts(episodes_dir: Path) -> None:
    model = ActionToVideoModel(tiny_config(patch_size=2), codec=_codec())
    model.codec.temporal_factor = 2  # what a causal video codec reports
    clips = ClipDataset(
        list(split_episodes(episodes_dir, val_episodes=1)[0])[:1], ClipConfig(rollout_frames=1)
    )
    with pytest.raises(ValueError, match="needs a per-frame codec"):
        LatentClips(clips, model)


def test_the_training_loss_is_taken_on_the_rolled_out_clip() -> None:
    torch.manual_seed(3)
    model = ActionToVideoModel(tiny_config(patch_size=2, num_inference_steps=1), codec=_codec())
    latents, prompts = torch.randn(4, 3, 4, 8, 8), torch.rand(4, 3, 3, 32, 32) * 2 - 1
    weight = torch.rand(4, 1, 1, 32, 32) + 1
    loss = DiffusionLoss(model, rollout_fraction=1.0)(
        latents, prompts, weight, torch.Generator().manual_seed(6)
    )
    generator = torch.Generator().manual_seed(6)
    rolled, rolled_prompts = model.rollout_context(latents, prompts, 1.0, generator)
    expected = model.latent_training_loss(rolled, rolled_prompts, generator, loss_weight=weight)
    torch.testing.assert_close(loss, expected)
    recorded = model.latent_training_loss(
        latents[:, 1:], prompts[:, 1:], torch.Generator().manual_seed(6), loss_weight=weight
    )
    assert not torch.isclose(loss, recorded)
