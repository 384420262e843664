"""Scripted experts for the reach and push tasks, with a skill knob.

The experts read the state observation through the env's ``state_layout`` (a flat vector, or the ``"state"``
entry of a Dict observation) and emit end-effector-delta actions. Two knobs degrade them into a graded
family of policies, which is what policy evaluation needs:

- ``noise``: standard deviation of Gaussian noise added to every action entry (actions are in [-1, 1]);
- ``hesitation``: probability that a step is a no-op (no motion, gripper command unchanged).

The push expert has three more, which make contact that does *not* succeed (what a world model must not
score as success): ``aim`` (push the cube cleanly, but towards a goal turned by this many degrees about the
cube), ``hover`` (push this high above pushing height: the fingers pass over the cube) and ``stall_after``
(stop after this many pushing steps: a partial push).

Both are drawn from the policy's own seeded generator, so a (policy seed, env seed) pair replays exactly.
The experts read ``env.unwrapped.interface`` (:class:`~vap_env.envs.interface.EnvInterface`, the same in
the simulator and in imagination): ``state_layout``, ``workspace`` (low, high) of the commanded TCP,
``max_ee_step`` and ``action_mode == "ee_delta"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from vap_env.envs.interface import EnvInterface


class _ScriptedPolicy:
    """Shared parts: reading the state, the skill knob, and turning a TCP target into an action."""

    SPEC_ARGS: dict[str, type] = {"noise": float, "hesitation": float, "seed": int}
    """The keyword arguments a ``scripted:KEY=VALUE,...`` spec may set, with their types."""

    def __init__(
        self, env: gym.Env, noise: float = 0.0, hesitation: float = 0.0, seed: int | None = None
    ) -> None:
        if noise < 0:
            raise ValueError(f"`noise` must be >= 0, got {noise}")
        if not 0 <= hesitation <= 1:
            raise ValueError(f"`hesitation` must be in [0, 1], got {hesitation}")
        interface = EnvInterface.of(env)
        if interface.action_mode != "ee_delta":
            raise ValueError(f"scripted experts need action_mode='ee_delta', got {interface.action_mode!r}")
        self.layout: dict[str, slice] = dict(interface.state_layout)
        self.workspace_low, self.workspace_high = (
            np.asarray(b, dtype=np.float64) for b in interface.workspace
        )
        self.max_step = float(interface.max_ee_step)
        self.noise, self.hesitation = float(noise), float(hesitation)
        self._rng = np.random.default_rng(seed)

    reads_images = False  # the state alone (:func:`~vap_env.policies.base.reads_images`)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def read(self, obs: Any, name: str) -> np.ndarray:
        state = obs["state"] if isinstance(obs, dict) else obs
        return np.asarray(state, dtype=np.float64)[self.layout[name]]

    def towards(
        self,
        tcp: np.ndarray,
        target: np.ndarray,
        speed: float = 1.0,
        straight: bool = False,
    ) -> np.ndarray:
        """(3,) action moving the TCP to ``target``, each axis at most ``speed`` (a fraction of a full step).

        ``straight`` scales the whole vector so the TCP moves along the line to the target; otherwise each
        axis saturates on its own (faster, but the path bends).
        """
        v = (target - tcp) / self.max_step
        if not straight:
            return np.clip(v, -speed, speed)
        largest = float(np.max(np.abs(v)))
        return v * (speed / largest) if largest > speed else v

    def finish(self, motion: np.ndarray, gripper: float) -> np.ndarray:
        """Apply the skill knob to the clean action (motion (3,), gripper) and return a float32 action."""
        if self.hesitation > 0 and self._rng.random() < self.hesitation:
            motion = np.zeros(3)
        action = np.append(motion, gripper)
        if self.noise > 0:
            action = action + self._rng.normal(0.0, self.noise, size=4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class ScriptedReachPolicy(_ScriptedPolicy):
    """Moves the TCP straight to the goal, gripper open.

    Args:
        env: The (possibly wrapped) reach env.
        noise: Gaussian action-noise standard deviation.
        hesitation: Probability of a no-op step.
        seed: Seed of the policy's generator.
    """

    def act(self, obs: Any) -> np.ndarray:
        tcp, goal = self.read(obs, "ee_position"), self.read(obs, "goal")
        return self.finish(self.towards(tcp, goal), 1.0)


class ScriptedPushPolicy(_ScriptedPolicy):
    """Pushes the cube along the cube-to-goal line with the closed gripper.

    Three phases: *approach* (rise clear of the cube, then move above a point behind the cube, on the far side
    from the goal), *descend* (lower the fingers to pushing height there) and *push* (drive the TCP along the
    line so the cube centre ends on the goal). If the cube drifts off the line (the TCP is more than
    ``off_line`` from it) the expert lifts and approaches again.

    Args:
        env: The (possibly wrapped) push env.
        noise: Gaussian action-noise standard deviation.
        hesitation: Probability of a no-op step.
        seed: Seed of the policy's generator.
        cube_size: Edge of the cube (m).
        standoff: Distance of the approach point behind the cube's centre (m).
        off_line: Lateral TCP distance from the push line that triggers a re-approach (m).
        aim: Degrees by which the pushed-to point is turned about the cube's first position, away from the
            goal (0: the goal itself; 180: straight away from it). The push is as clean as the expert's.
        hover: Height (m) above pushing height at which the fingers push: above about 0.05 they pass over
            the cube without touching it.
        stall_after: Pushing steps after which the expert stops moving for the rest of the episode (0: never).
    """

    SPEC_ARGS = {**_ScriptedPolicy.SPEC_ARGS, "aim": float, "hover": float, "stall_after": int}

    def __init__(
        self,
        env: gym.Env,
        noise: float = 0.0,
        hesitation: float = 0.0,
        seed: int | None = None,
        cube_size: float = 0.05,
        standoff: float = 0.065,
        off_line: float = 0.02,
        aim: float = 0.0,
        hover: float = 0.0,
        stall_after: int = 0,
    ) -> None:
        super().__init__(env, noise, hesitation, seed)
        if "object_position" not in self.layout:
            raise ValueError("ScriptedPushPolicy needs a push env: its state has no `object_position`")
        if hover < 0 or stall_after < 0:
            raise ValueError(f"`hover` and `stall_after` must be >= 0, got {hover} and {stall_after}")
        self.half = cube_size / 2
        self.standoff, self.off_line = float(standoff), float(off_line)
        self.aim, self.stall_after = np.deg2rad(float(aim)), int(stall_after)
        self.z_push = float(self.workspace_low[2]) + float(hover)
        self.z_safe = max(self.z_push, float(self.workspace_low[2]) + cube_size + 0.03)  # 3 cm above the top
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.phase, self.pushed, self.target = "approach", 0, None

    def act(self, obs: Any) -> np.ndarray:
        tcp, goal = self.read(obs, "ee_position"), self.read(obs, "goal")
        cube = self.read(obs, "object_position")
        if self.aim:  # push to the goal turned about the cube's first position (aim 0: the goal, exactly)
            if self.target is None:
                c, s = np.cos(self.aim), np.sin(self.aim)
                offset = goal[:2] - cube[:2]
                self.target = goal.copy()
                self.target[:2] = cube[:2] + np.array(
                    [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]]
                )
            goal = self.target
        if self.stall_after and self.pushed >= self.stall_after:
            return self.finish(np.zeros(3), -1.0)
        to_goal = goal[:2] - cube[:2]
        u = to_goal / max(np.linalg.norm(to_goal), 1e-6)
        rel = tcp[:2] - cube[:2]
        along, lateral = float(rel @ u), abs(float(rel[0] * u[1] - rel[1] * u[0]))
        behind = cube[:2] - self.standoff * u
        if self.phase == "push" and (lateral > self.off_line or along > -self.half):
            self.phase = "approach"
        if self.phase == "descend" and np.linalg.norm(tcp[:2] - behind) > 0.03:
            self.phase = "approach"
        if self.phase == "approach" and np.linalg.norm(tcp[:2] - behind) < 0.01:
            self.phase = "descend"
        if self.phase == "descend" and tcp[2] < self.z_push + 0.01:
            self.phase = "push"
        self.pushed += self.phase == "push"
        return self.finish(self._motion(tcp, cube, goal, u, behind), -1.0)

    def _motion(
        self, tcp: np.ndarray, cube: np.ndarray, goal: np.ndarray, u: np.ndarray, behind: np.ndarray
    ) -> np.ndarray:
        if self.phase == "push":
            # Aim one step ahead of the contact point behind the cube's *current* centre: as the cube turns or
            # drifts, the line turns with it and the fingers steer back behind it.
            contact = self.half + 0.012
            ahead = min(float(np.linalg.norm(goal[:2] - cube[:2])), self.max_step)
            return self.towards(tcp, np.append(cube[:2] + (ahead - contact) * u, self.z_push), straight=True)
        if self.phase == "descend":
            return self.towards(tcp, np.append(behind, self.z_push))
        near_cube = np.linalg.norm(tcp[:2] - cube[:2]) < self.half + 0.06
        if tcp[2] < self.z_safe - 0.01 and near_cube:  # straight up first: never sweep the cube off
            return self.towards(tcp, np.append(tcp[:2], self.z_safe))
        return self.towards(tcp, np.append(behind, self.z_safe))
