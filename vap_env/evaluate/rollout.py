"""A policy rolled out in imagination, saved as a video: :func:`rollout`.

The world-model env starts from the simulator's first frame for the seed and the policy acts on what the
model generates; each video frame shows the imagined frame beside the visual action prompt it was generated
from (a skeleton, for state-prompt models the skeleton of the commanded state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vap_env.envs.world_model_env import WorldModelEnv
from vap_env.evaluate.report import side_by_side, write_video
from vap_env.model.protocol import WorldModel
from vap_env.policies import as_policy
from vap_env.tasks import task_spec


def rollout(
    model_dir: str | Path | WorldModel,
    policy_spec: str,
    out_video: str | Path,
    robot: str | None = None,
    task: str = "push",
    steps: int | None = None,
    seed: int = 0,
    camera: str = "fixed",
    device: str | torch.device | None = None,
    num_inference_steps: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Rolls policy ``policy_spec`` out in imagination and writes ``out_video`` (imagined | prompt).

    The episode ends when the estimated task state is a success or after ``steps`` steps.

    Args:
        model_dir: A ``save_pretrained`` directory (or a ``vap-env train`` output), ``"default"``, or a model.
        policy_spec: The policy (``vap_env.policies.as_policy``), reseeded with ``seed``.
        out_video: The ``.mp4`` to write.
        robot: Checked against the model's robot (``None``: the model's).
        task: ``"push"`` or ``"reach"``.
        steps: Most steps (``None``: the task's episode limit).
        seed: Reset seed: the initial state is the simulator's for this seed.
        camera: ``"fixed"`` or ``"random"``.
        device: Where the model runs.
        num_inference_steps: Denoising steps (``None``: the model's default).
        progress: Show a progress bar.

    Returns:
        ``{"video", "frames", "steps", "success", "return"}``.
    """
    steps = steps or task_spec(task).max_episode_steps
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    env = WorldModelEnv(
        model_dir,
        robot=robot,
        task=task,
        obs_mode="both",
        camera=camera,
        num_inference_steps=num_inference_steps,
        device=device,
        render_mode="rgb_array",
        render_view="both",
    )
    try:
        policy = as_policy(policy_spec, env)
        obs, info = env.reset(seed=seed)
        policy.reset(seed=seed)
        frames = [_panel(env.render())]
        total, success, taken = 0.0, bool(info["is_success"]), 0
        for _ in tqdm(range(steps), desc=f"rollout {policy_spec}", unit="step", disable=not progress):
            obs, reward, terminated, truncated, info = env.step(policy.act(obs))
            frames.append(_panel(env.render()))
            total, taken = total + reward, taken + 1
            success = success or terminated
            if terminated or truncated:
                break
    finally:
        env.close()
    path = write_video(out_video, frames)
    return {
        "video": str(path),
        "frames": len(frames),
        "steps": taken,
        "success": bool(success),
        "return": float(total),
    }


def _panel(both: np.ndarray) -> np.ndarray:
    """The env's (H, 2W, 3) frame|prompt render as labelled, upscaled panels."""
    width = both.shape[1] // 2
    return side_by_side((both[:, :width], both[:, width:]), ("imagined", "prompt"))
