"""Configuration of a policy and fidelity evaluation (:class:`EvaluateConfig`), in a module without torch.

:func:`vap_env.evaluate.runner.evaluate` takes its defaults from it, and ``vap-env evaluate`` (and the
flags ``vap-env rollout`` shares) its flags, defaults and help, so building the parser imports neither torch
nor PyBullet and each default is written once.
"""

from __future__ import annotations

import dataclasses

from vap_env.modes import CAMERA_MODES
from vap_env.tasks import TASKS, task_spec

SEED = 400_000
"""Reset seed of the first evaluated episode. `vap-env collect` starts at 0 and the shipped default model
trained on seeds below 15000 (held out: 100000-111009), so evaluating from here scores initial states that
no training run drew, unless asked to."""


@dataclasses.dataclass
class EvaluateConfig:
    """What :func:`~vap_env.evaluate.runner.evaluate` runs: policies, episodes, seeds, horizons, outputs.

    Args:
        robot: Robot name, checked against the model's; by default (``None``) the model's.
        task: The task, ``push`` or ``reach``.
        policies: Policy specs (``vap_env.policies.make_policy``; ``sb3:FILE.zip`` unpickles the file: load
            only trusted checkpoints), each named by its text or ``NAME=SPEC``; at least two for
            correlations. By default (``None``) the task's family (``TaskSpec.policy_family``): the graded
            scripted experts and random actions, and on push two policies that touch the cube without
            solving the task. ``evaluate`` also takes a dict ``name -> source`` (a spec, a policy object, a class
            or a factory).
        episodes: Episodes per policy and world.
        horizon: Open-loop replay steps ``H`` (fidelity at horizons ``1..H``).
        seed: Reset seed of the first episode: episode ``k`` of every policy starts from the initial state of
            seed ``seed + k`` in both worlds. The default draws initial states that ``vap-env collect`` (which
            starts at 0) and the default model's training never drew.
        max_steps: Episode length limit in both worlds; by default (``None``) the task's (push 50, reach
            30).
        camera: ``fixed``: the robot's default view; ``random``: a viewpoint per seed, the same in both
            worlds.
        num_inference_steps: Denoising steps per generated frame; by default (``None``) the model's.
        videos_per_policy: Side-by-side replay videos (simulator | imagined | prompt) written per policy.
        batch_size: Episodes imagined together.
        disagreement_videos: Closed-loop side-by-side videos (simulator | imagined) of the episodes where
            the two worlds disagree most, over all policies: on success first, then on the final distance to
            the goal: the scored episodes, their imagined frames captured as they run (0: none). Each
            kept episode costs its frames in memory until the end (about 0.6 MB at 64x64) and one video.
    """

    robot: str | None = None
    task: str = dataclasses.field(default="push", metadata={"choices": tuple(TASKS)})
    policies: tuple[str, ...] | None = None
    episodes: int = 10
    horizon: int = 16
    seed: int = SEED
    max_steps: int | None = None
    camera: str = dataclasses.field(default="fixed", metadata={"choices": CAMERA_MODES})
    num_inference_steps: int | None = None
    videos_per_policy: int = 2
    batch_size: int = 16
    disagreement_videos: int = 10

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {list(TASKS)}, got {self.task!r}")
        self.policies = task_spec(self.task).policy_family if self.policies is None else tuple(self.policies)
        if not self.policies:
            raise ValueError("`policies` must name at least one policy spec, got none")
        for name in ("episodes", "horizon", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("videos_per_policy", "disagreement_videos"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"`max_steps` must be >= 1 or None, got {self.max_steps}")
        bad = [p for p in self.policies if not isinstance(p, str) or not p.strip()]
        if bad:
            raise ValueError(f"`policies` must be non-empty spec strings, got {bad}")
        for name, allowed in (("task", tuple(TASKS)), ("camera", CAMERA_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {getattr(self, name)!r}")
