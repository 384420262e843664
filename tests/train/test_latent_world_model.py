"""A tiny world model trained briefly on the shipped codec's latents beats repeating the last frame on
held-out episodes: the reason small vap-env models work in a learned latent space (issue: the codec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vap_env.model.config import WorldModelConfig
from vap_env.model.loading import DEFAULT_MODEL_DIR
from vap_env.recording import collect
from vap_env.train.world_model_trainer import WorldModelTrainConfig, train_world_model

POLICIES = ("scripted:noise=0.0", "scripted:noise=0.5,hesitation=0.15")


@pytest.mark.slow
def test_latent_world_model_beats_repeat_last_frame_on_heldout(tmp_path: Path) -> None:
    train, heldout = tmp_path / "train", tmp_path / "heldout"
    for i, spec in enumerate(POLICIES):  # 40 training and 6 held-out episodes (other seeds), 64x64
        collect("panda", "push", 20, spec, train, image_size=64, seed=1000 * i, progress=False)
        collect("panda", "push", 3, spec, heldout, image_size=64, seed=50_000 + 1000 * i, progress=False)
    config = WorldModelTrainConfig(steps=1500, batch_size=16, lr=1e-3, warmup=50, eval_every=1500,
                                   eval_clips=64, checkpoint_every=10**6, log_every=100)  # fmt: skip
    result = train_world_model(train, tmp_path / "run", WorldModelConfig.tiny(prompt="skeleton"), config,
                               codec_dir=DEFAULT_MODEL_DIR / "model" / "codec", val_data_dir=heldout)  # fmt: skip
    # Measured (one torch thread, 14.5 min on a CPU shared with a light job), with the Panda's workspace camera
    # and the default's 128x128 codec on these 64x64 frames: held-out one-step PSNR 17.2 dB untrained ->
    # 26.97 dB, against 25.62 dB for repeating the last frame; SSIM 0.875 vs 0.873. (Under the wider view
    # and the 64x64 codec before them: 26.74 against 25.12 dB, SSIM 0.894 vs 0.880.) The repeat baseline is a
    # function of the recorded data: 25.62 dB since the camera change of 8 December 2026.
    assert result["baseline_psnr"] == pytest.approx(25.62, abs=0.05)
    assert result["heldout_psnr"] > result["baseline_psnr"] + 0.8
    assert result["heldout_ssim"] > result["baseline_ssim"]
