"""The denoising loop with oracle denoisers: exact recovery, known prefix, guidance, seeding."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from torch import Tensor

from vap_env.model.sampler import Denoiser, default_scheduler, sample_latents

SHAPE = (3, 4, 2, 5, 5)


def _oracle(clean: Tensor, scheduler: CogVideoXDDIMScheduler) -> Denoiser:
    """A perfect v-prediction model for data that is always ``clean``."""

    def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1).float()
        target = clean.repeat(latents.shape[0] // clean.shape[0], 1, 1, 1, 1)
        # x0 = sqrt(a) x_t - sqrt(1 - a) v  =>  v = (sqrt(a) x_t - x0) / sqrt(1 - a)
        return (alpha.sqrt() * latents - target) / (1 - alpha).clamp_min(1e-12).sqrt()

    return denoise


def test_default_scheduler_is_the_cogvideox_recipe() -> None:
    scheduler = default_scheduler()
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.rescale_betas_zero_snr and scheduler.config.timestep_spacing == "trailing"
    assert scheduler.alphas_cumprod[-1] == 0  # zero terminal SNR: the first step sees pure noise
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 749, 499, 249]


@pytest.mark.parametrize("steps", [1, 4, 8])
def test_oracle_denoiser_recovers_the_data(steps: int) -> None:
    scheduler = default_scheduler()
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = sample_latents(_oracle(clean, scheduler), scheduler, SHAPE, steps, torch.Generator().manual_seed(1))
    assert out.shape == SHAPE
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=1e-4)


def test_known_prefix_is_kept_and_seen_noised() -> None:
    scheduler = default_scheduler()
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    seen = []
    oracle = _oracle(clean, scheduler)

    def recording(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        seen.append((latents[:, :1].clone(), int(timesteps[0])))
        return oracle(latents, timesteps, control_scale)

    prefix = clean[:, :1]
    g = torch.Generator().manual_seed(1)
    out = sample_latents(recording, scheduler, SHAPE, 4, g, known_prefix=prefix)
    assert torch.equal(out[:, :1], prefix)
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=1e-4)
    # at every step the prefix is the clean prefix at that step's noise level
    for noisy, t in seen[1:]:
        alpha = scheduler.alphas_cumprod[t].float()
        noise = (noisy - alpha.sqrt() * prefix) / (1 - alpha).sqrt()
        assert 0.5 < noise.std() < 1.5
    assert len({t for _, t in seen}) == 4


def test_same_seed_same_latents_other_seed_other_latents() -> None:
    scheduler = default_scheduler()

    def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        return 0.5 * latents

    a = sample_latents(denoise, scheduler, SHAPE, 3, torch.Generator().manual_seed(7))
    b = sample_latents(denoise, scheduler, SHAPE, 3, torch.Generator().manual_seed(7))
    c = sample_latents(denoise, scheduler, SHAPE, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_guidance_batches_conditional_and_unconditional_rows() -> None:
    scheduler = default_scheduler()
    calls = []

    def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        calls.append(control_scale.tolist())
        return control_scale.view(-1, 1, 1, 1, 1) * torch.ones_like(latents)  # conditional 1, unconditional 0

    g = torch.Generator().manual_seed(0)
    guided = sample_latents(denoise, scheduler, SHAPE, 2, g, guidance_scale=3.0)
    assert calls[0] == [1.0] * 3 + [0.0] * 3

    def tripled(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        return 3.0 * torch.ones_like(latents)  # what guidance 3 makes of outputs 1 and 0

    expected = sample_latents(tripled, scheduler, SHAPE, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(guided, expected)


def test_guided_oracle_still_recovers_the_data() -> None:
    scheduler = default_scheduler()
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = sample_latents(
        _oracle(clean, scheduler), scheduler, SHAPE, 4, torch.Generator().manual_seed(1), guidance_scale=2.5
    )
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=1e-4)


def test_rejects_dpm_scheduler_and_bad_prefix() -> None:
    def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        return latents

    with pytest.raises(TypeError, match="use DDIM"):
        sample_latents(denoise, CogVideoXDPMScheduler(), SHAPE, 2)
    with pytest.raises(ValueError, match="does not fit latents"):
        sample_latents(denoise, default_scheduler(), SHAPE, 2, known_prefix=torch.zeros(3, 4, 2, 5, 5))
