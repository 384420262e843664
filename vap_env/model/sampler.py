"""The denoising loop: turns Gaussian noise into latent frames with a diffusers scheduler.

The loop knows nothing about transformers or codecs: it is handed a :class:`Denoiser` (latents, timesteps,
per-sample control scale -> the model output the scheduler expects) and a DDIM-family scheduler, and it
runs the CogVideoX pipelines' loop on a whole batch of sequences at once. Two additions for a world model:

* a *known prefix* (the context frames): at every step those latent frames are replaced by the context
  latents noised to the current level, with noise drawn once, so the model always sees them exactly as it
  saw them in training;
* classifier-free guidance over the control signal: the unconditional branch runs with control scale 0
  (ControlNet off / null state) in the same batched forward pass.

All randomness comes from the ``torch.Generator`` passed in: the same seed gives the same latents.
"""

from __future__ import annotations

from typing import Protocol

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor


class Denoiser(Protocol):
    """What the sampler calls at each step.

    Row ``i`` of a call belongs to sequence ``i % B`` of the batch being sampled (the classifier-free
    guidance pass stacks ``[conditional, unconditional]`` rows), so conditioning tensors of batch ``B``
    are repeated ``latents.shape[0] // B`` times.
    """

    def __call__(self, latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
        """Predicts the scheduler's target.

        Args:
            latents: ``(N, F, C, h, w)`` noisy latents.
            timesteps: ``(N,)`` integer timesteps.
            control_scale: ``(N,)`` control strength per row (1 conditional, 0 unconditional).

        Returns:
            ``(N, F, C, h, w)`` model output (velocity for a v-prediction scheduler).
        """
        ...


def default_scheduler() -> CogVideoXDDIMScheduler:
    """The world model's scheduler: CogVideoX DDIM, v-prediction, zero terminal SNR, trailing timesteps.

    ``snr_shift_scale=1`` because the SD3-style shift of CogVideoX-5B targets its 17k-token videos; the small
    models here see a few hundred tokens. Full-size models keep their own ``scheduler/`` config.
    """
    return CogVideoXDDIMScheduler(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=1.0,
        clip_sample=False,
        set_alpha_to_one=True,
    )


def ddim_step(sample: Tensor, velocity: Tensor, alpha: Tensor, alpha_prev: Tensor) -> Tensor:
    """One deterministic DDIM step of a v-prediction model, per row: ``CogVideoXDDIMScheduler.step``'s update.

    ``sample`` is ``z_t``, ``velocity`` the model's output there; ``alpha`` and ``alpha_prev`` are ᾱ at ``t``
    and at the step's end (``(B, 1, ...)``, broadcast; 1 for the clean end). The scheduler takes one timestep
    for the whole batch; distillation draws one per row, hence this form.
    """
    clean = alpha.sqrt() * sample - (1 - alpha).sqrt() * velocity
    keep = ((1 - alpha_prev) / (1 - alpha)).sqrt()
    return keep * sample + (alpha_prev.sqrt() - alpha.sqrt() * keep) * clean


def ddim_velocity_to(sample: Tensor, end: Tensor, alpha: Tensor, alpha_end: Tensor) -> Tensor:
    """The velocity whose :func:`ddim_step` from ``sample`` (ᾱ ``alpha``) lands on ``end`` (ᾱ ``alpha_end``).

    The step is ``end = k z + (sqrt(ᾱ_end) - sqrt(ᾱ) k) x0`` with ``k = sqrt((1 - ᾱ_end) / (1 - ᾱ))`` and
    ``x0 = sqrt(ᾱ) z - sqrt(1 - ᾱ) v``: solved for ``x0``, then for ``v`` (progressive distillation's target).
    """
    keep = ((1 - alpha_end) / (1 - alpha)).sqrt()
    clean = (end - keep * sample) / (alpha_end.sqrt() - alpha.sqrt() * keep)
    return (alpha.sqrt() * sample - clean) / (1 - alpha).sqrt()


@torch.no_grad()
def sample_latents(
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    shape: tuple[int, int, int, int, int],
    num_inference_steps: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    guidance_scale: float = 1.0,
    known_prefix: Tensor | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Samples latent videos by iterating the scheduler from pure noise.

    Args:
        denoiser: The model wrapper (see :class:`Denoiser`).
        scheduler: A DDIM-family scheduler whose ``step(output, t, sample)`` is deterministic given its
            inputs (``CogVideoXDDIMScheduler``, ``DDIMScheduler``). Its timesteps are (re)set here.
        shape: ``(B, F, C, h, w)`` of the latents to sample, known prefix included.
        num_inference_steps: Denoising steps.
        generator: Source of all noise (initial latents and the prefix's noise); a list of ``B`` generators
            draws row ``i``'s noise from generator ``i`` alone (diffusers' convention), so a sequence samples
            the same whatever else is in its batch.
        guidance_scale: Classifier-free guidance weight over the control signal; 1 disables it (one pass).
        known_prefix: ``(B, F_k, C, h, w)`` clean latents of the first ``F_k`` frames (the context), or
            ``None``.
        device: Where to sample.
        dtype: Latent dtype.

    Returns:
        ``(B, F, C, h, w)`` denoised latents; the first ``F_k`` frames equal ``known_prefix``.
    """
    if isinstance(scheduler, CogVideoXDPMScheduler):
        raise TypeError("CogVideoXDPMScheduler needs the previous prediction at each step; use DDIM")
    if num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
    batch_size = shape[0]
    if isinstance(generator, list) and len(generator) != batch_size:
        raise ValueError(f"a list of generators needs one per batch row ({batch_size}), got {len(generator)}")
    num_known = 0 if known_prefix is None else known_prefix.shape[1]
    if known_prefix is not None and (
        known_prefix.shape[0] != batch_size or known_prefix.shape[2:] != shape[2:] or num_known >= shape[1]
    ):
        raise ValueError(f"`known_prefix` of shape {tuple(known_prefix.shape)} does not fit latents {shape}")

    latents = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    prefix_noise = None
    if known_prefix is not None:
        prefix_noise = randn_tensor(
            tuple(known_prefix.shape), generator=generator, device=torch.device(device), dtype=dtype
        )
        known_prefix = known_prefix.to(device=device, dtype=dtype)

    guided = guidance_scale != 1.0
    scale = torch.ones(batch_size, device=device, dtype=dtype)
    if guided:
        scale = torch.cat([scale, torch.zeros_like(scale)])
    scheduler.set_timesteps(num_inference_steps, device=device)
    for t in scheduler.timesteps:
        if known_prefix is not None:
            timestep = t.expand(batch_size)
            noisy_prefix = scheduler.add_noise(known_prefix, prefix_noise, timestep)
            latents = torch.cat([noisy_prefix, latents[:, num_known:]], dim=1)
        model_input = torch.cat([latents, latents]) if guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        output = denoiser(model_input, t.expand(model_input.shape[0]), scale).float()
        if guided:
            conditional, unconditional = output.chunk(2)
            output = unconditional + guidance_scale * (conditional - unconditional)
        latents = scheduler.step(output, t, latents, return_dict=False)[0].to(dtype)
    if known_prefix is not None:
        latents = torch.cat([known_prefix, latents[:, num_known:]], dim=1)
    return latents
