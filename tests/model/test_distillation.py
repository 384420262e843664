"""Progressive distillation: the DDIM algebra against diffusers' scheduler, and the loss on a tiny model."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from tests.conftest import perturb, tiny_autoencoder
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.cogvideox.training import distillation_timesteps
from vap_env.model.sampler import ddim_step, ddim_velocity_to, default_scheduler


def _alpha(scheduler, timestep: int) -> torch.Tensor:
    value = scheduler.alphas_cumprod[timestep] if timestep >= 0 else scheduler.final_alpha_cumprod
    return torch.as_tensor(value, dtype=torch.float32).view(1, 1, 1, 1, 1)


def test_ddim_step_is_the_schedulers_step_at_every_timestep_of_4_steps() -> None:
    scheduler = default_scheduler()
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps.tolist():
        z, v = torch.randn(1, 2, 3, 4, 4, generator=g), torch.randn(1, 2, 3, 4, 4, generator=g)
        want = scheduler.step(v, t, z, return_dict=False)[0]
        got = ddim_step(z, v, _alpha(scheduler, t), _alpha(scheduler, t - 250))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("student_steps", [1, 2])
def test_one_step_with_the_target_velocity_lands_where_two_teacher_steps_land(student_steps: int) -> None:
    """The target is checked with diffusers' own scheduler: two teacher steps at 2K steps from ``z_t``, then
    one student step at K steps with the target velocity, which must reach the same latents."""
    teacher, student = default_scheduler(), default_scheduler()
    teacher.set_timesteps(2 * student_steps)
    student.set_timesteps(student_steps)
    grid = distillation_timesteps(default_scheduler(), student_steps)
    assert grid.tolist() == student.timesteps.tolist() == {1: [999], 2: [999, 499]}[student_steps]
    half = 1000 // (2 * student_steps)
    g = torch.Generator().manual_seed(1)
    for t in grid.tolist():
        z = torch.randn(1, 2, 3, 4, 4, generator=g)
        assert t - half in teacher.timesteps.tolist()  # the teacher's grid holds the midpoint
        middle = teacher.step(torch.randn(z.shape, generator=g), t, z, return_dict=False)[0]
        end = teacher.step(torch.randn(z.shape, generator=g), t - half, middle, return_dict=False)[0]
        target = ddim_velocity_to(z, end, _alpha(teacher, t), _alpha(teacher, t - 2 * half))
        landed = student.step(target, t, z, return_dict=False)[0]
        torch.testing.assert_close(landed, end, rtol=1e-4, atol=1e-4)


def test_timestep_grids_that_do_not_nest_are_refused() -> None:
    with pytest.raises(ValueError, match="6 to divide the 1000 training timesteps"):
        distillation_timesteps(default_scheduler(), 3)
    assert distillation_timesteps(default_scheduler(), 4).tolist() == [999, 749, 499, 249]


def _models(layout: str) -> tuple[ActionToVideoModel, ActionToVideoModel]:
    """A perturbed tiny latent model sampling with 1 step, and a frozen copy of it sampling with 2."""
    config = WorldModelConfig.tiny(
        image_size=32,
        patch_size=2,
        controlnet_encoder_channels=8,
        context_layout=layout,
        context_frames=2,
        num_inference_steps=1,
        stage="distill",
    )
    torch.manual_seed(0)
    student = perturb(ActionToVideoModel(config, codec=tiny_autoencoder()), encoder_gain=10.0)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    teacher.config.num_inference_steps = 2
    return student, teacher


def _clip(model: ActionToVideoModel) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    frames = torch.rand(4, 3, 3, 32, 32, generator=g) * 2 - 1
    prompts = torch.rand(4, 3, 3, 32, 32, generator=g) * 2 - 1
    return model.encode_clip(frames[:, :2], frames[:, 2:]), prompts


@pytest.mark.parametrize("layout", ["sequence", "channels"])
def test_distillation_trains_every_part_and_fits_the_teacher(layout: str) -> None:
    student, teacher = _models(layout)
    latents, prompts = _clip(student)

    def loss() -> torch.Tensor:
        return student.distillation_loss(latents, prompts, teacher, torch.Generator().manual_seed(3))

    first = loss()
    first.backward()
    # the stage trains the base, ControlNet and LoRA; the teacher is left alone
    for part, params in student._parts().items():
        if params and part != "other":
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), part
    assert all(p.grad is None for p in teacher.parameters())
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        step = loss()
        step.backward()
        optimizer.step()
    # Measured: the loss on this fixed clip and noise falls to 0.4-0.5 % of its start in 40 steps (both
    # layouts). The target's algebra is checked against diffusers above; this checks that the student learns
    # towards a teacher that stays fixed.
    assert loss().item() < 0.05 * first.item()
    with pytest.raises(ValueError, match="twice the student's 1 steps, not 4"):
        teacher.config.num_inference_steps = 4
        student.distillation_loss(latents, prompts, teacher)


def test_a_student_that_is_its_two_step_teacher_has_zero_loss_when_two_steps_are_one() -> None:
    """If the teacher's velocity is the exact one of a single clean sample (here: the model is replaced by
    the closed-form velocity of the clip's own target), DDIM is exact in any number of steps, so the
    student that predicts the same has nothing to learn: the loss is zero up to rounding."""
    student, teacher = _models("channels")
    latents, prompts = _clip(student)
    n_context = student.num_context_latents
    sample = student.to_target(latents[:, n_context:], latents[:, :n_context]).float()
    alphas = student.scheduler.alphas_cumprod

    def exact(self, model_input, timesteps, text, prompts_, scale, rotary, trajectory=None):
        z = model_input[:, :, : sample.shape[2]].float()
        a = alphas[timesteps.cpu()].view(-1, 1, 1, 1, 1)
        noise = (z - a.sqrt() * sample) / (1 - a).sqrt()
        return a.sqrt() * noise - (1 - a).sqrt() * sample  # v = sqrt(a) eps - sqrt(1 - a) x

    student.config.context_noise_log_sigma = teacher.config.context_noise_log_sigma = None
    for model in (student, teacher):
        model._predict = exact.__get__(model)
    value = student.distillation_loss(latents, prompts, teacher, torch.Generator().manual_seed(0))
    assert value.item() < 1e-8


def test_a_distilled_model_warns_when_sampled_with_other_steps() -> None:
    student, _ = _models("channels")
    student.eval()
    g = torch.Generator().manual_seed(0)
    context = torch.rand(1, 2, 3, 32, 32, generator=g) * 2 - 1
    prompts = torch.rand(1, 3, 3, 32, 32, generator=g) * 2 - 1
    with pytest.warns(UserWarning, match="distilled to sample with 1 denoising step"):
        student.generate(context, prompts, num_inference_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own step count: no warning
        student.generate(context, prompts)
        student.generate(context, prompts, num_inference_steps=1)
