"""The world-model environment: an action becomes a visual action prompt, from which a video model imagines.

:class:`WorldModelEnv` runs one imagined episode at a time; the episodes themselves (starting, advancing with
the model, observations, rewards) are :class:`~vap_env.envs.imagined_world.ImaginedWorld`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from vap_env.camera import Camera
from vap_env.envs import imagined_world  # by module: its names live there only, not here too
from vap_env.envs.config import WorldModelEnvConfig, check_render
from vap_env.model.protocol import WorldModel
from vap_env.sim.env import PHYSICS_HZ

ResetOutput = tuple[Any, dict[str, Any]]
StepOutput = tuple[Any, float, bool, bool, dict[str, Any]]


class WorldModelEnv(gym.Env):
    """
    ## Description

    The tabletop tasks of :class:`~vap_env.sim.env.SimEnv` (``reach``, ``push``) with a learned world model as
    the dynamics: every step turns the action into a commanded robot state (``vap_env.control``, the same code
    as the simulator's), draws it as a visual action prompt (a skeleton by default, the kind the model was
    trained with) and lets the world model (a :class:`~vap_env.model.protocol.WorldModel`, by default the
    CogVideoX action-to-video model) generate the next frame(s) from the last ``context_frames`` frames
    (rolling buffers, as in DIAMOND). Nothing reads a simulator after the reset: the robot's state is its
    commanded state; the cube's position is the model's own state where it has object dynamics
    (``spec.object_warp``, as the shipped default does: detected in the first frame, moved by the dynamics
    at every step, the frames drawn from it), else it is estimated from the generated frames
    (:mod:`vap_env.envs.estimation`). A model that generates ``frames_per_step`` = k > 1 frames per call is
    prompted with k commanded states along the joint-space line from the previous command to the new one; the
    observation is the last frame.

    ## Action Space

    As SimEnv's: ``action_mode="ee_delta"`` (default) ``Box(-1, 1, (4,), float32)`` = (dx, dy, dz, gripper),
    2 cm TCP steps within ``self.workspace``; ``action_mode="joint_delta"`` ``Box(-1, 1, (J + 1,), float32)``.
    Entries outside [-1, 1] are clipped; a wrong shape or a non-finite entry raises ``ValueError``.

    ## Observation Space

    As SimEnv's, from the same ``state_layout``: ``image`` (default) the newest generated frame,
    ``Box(0, 255, (H, W, 3), uint8)``; ``state`` ``Box((J + 10,) or (J + 7,), float32)``: commanded joints,
    TCP (forward kinematics of the commanded joints), commanded gripper, *estimated* cube position
    (``push``), goal; ``both`` a ``Dict``. H = W = the model's image size.

    ## Rewards

    The task's reward code (``vap_env.sim.tasks``) on the estimated task state: ``reach``: ``reward_dist`` =
    -|TCP - goal|; ``push``: ``reward_dist`` = -|cube - goal| and ``reward_near`` = -0.1 |TCP - cube|.

    ## Starting State

    ``reset_mode="sim"`` (default): the simulator's first frame for the reset seed (an internal SimEnv of the
    same robot, task, camera and image size), so ``reset(seed=s)`` starts where ``SimEnv.reset(seed=s)``
    does. ``reset_mode="episode"``: the first ``context_frames`` frames of a recorded episode of ``dataset``
    (``options={"episode": i}``, else drawn), seen from the recording's camera. ``reset_mode="image"``:
    ``options={"image": (H, W, 3) uint8, "joints": (J,), "goal": (3,), "gripper": float (default 1),
    "camera": Camera (default: the env's)}``.
    A single start frame fills the whole context. The sampler's noise comes from a ``torch.Generator`` seeded
    from ``self.np_random`` at every reset: the same seed and actions give the same frames.

    ## Episode End

    Terminated when the estimated task state is a success (reach: TCP within 3 cm of the goal; push: cube
    within 5 cm). Truncated by the ``TimeLimit`` of the registered ids (``vap_env/<Robot><Task>-WM-v0``):
    30 steps for ``reach``, 50 for ``push``, as in the simulator.

    ## Arguments

    - ``model``: a :class:`~vap_env.model.protocol.WorldModel`, its ``save_pretrained`` directory, or
      ``"default"`` (the shipped tiny Panda push model, 128x128, with object dynamics; see
      ``vap_env/default_model/MODEL_CARD.md``).
    - ``config``: a :class:`~vap_env.envs.config.WorldModelEnvConfig` holding the arguments below but the
      render ones; each of them may also be given as a keyword argument (``gym.make(id, task="reach")``),
      which replaces the config's field.
    - ``robot``, ``image_size``: optional checks; the model's config decides both, and a model trained for
      another robot or size raises ``ValueError``.
    - ``task``, ``action_mode``, ``obs_mode``, ``camera`` (``"fixed"``, ``"random"``, a Camera): as SimEnv's.
    - ``reset_mode``: ``"sim"``, ``"episode"`` or ``"image"``; ``dataset``: the recorded dataset directory of
      ``"episode"``.
    - ``num_inference_steps``: denoising steps (the model's default when ``None``); ``guidance_scale``:
      classifier-free guidance over the prompt (1 = off); ``device``: where a loaded model runs.
    - ``render_mode``: ``None`` or ``"rgb_array"``; ``render_view``: ``"frame"``, ``"prompt"`` or ``"both"``
      (side by side, (H, 2W, 3)).
    - ``max_ee_step`` (m), ``max_joint_step`` (rad): the action scales.

    ## Info

    ``prompt`` (the prompt of the newest frame: (H, W, 3) uint8, or (J + 1,) float32 for state prompts),
    ``commanded_joints``, ``commanded_gripper``, ``commanded_ee_position``; ``joints``, ``gripper``,
    ``ee_position`` (the commanded state, the robot's own knowledge); ``goal``; ``object_position`` (3,) and
    ``object_visible`` (``push``: the estimate, kept from the last frame while the cube is hidden);
    ``is_success`` and the ``reward_*`` parts. Public attributes: ``frame`` (newest frame), ``camera``,
    ``episode`` (the :class:`~vap_env.envs.imagined_world.ImaginedEpisode`), ``world`` (its
    :class:`~vap_env.envs.imagined_world.ImaginedWorld`), ``model``, ``robot``, ``config`` and
    ``interface`` (the :class:`~vap_env.envs.interface.EnvInterface` policies read, as in SimEnv: task,
    action mode and scales, state layout, workspace).

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": PHYSICS_HZ // 20}

    def __init__(
        self,
        model: WorldModel | str | Path = "default",
        config: WorldModelEnvConfig | None = None,
        *,
        render_mode: str | None = None,
        render_view: str = "frame",
        **overrides: Any,
    ) -> None:
        check_render(render_mode, render_view, self.metadata["render_modes"])
        self.world = imagined_world.ImaginedWorld(model, config, **overrides)
        self.render_mode, self.render_view = render_mode, render_view
        self.action_space = self.world.action_space
        self.observation_space = self.world.observation_space
        # one place for what policies read (`interface`, as SimEnv has it) and what the env was made with
        self.config, self.interface = self.world.config, self.world.interface
        self.model, self.robot = self.world.model, self.world.robot
        self.episode: imagined_world.ImaginedEpisode | None = None

    @property
    def frame(self) -> np.ndarray:
        """(H, W, 3) uint8, the newest frame (a copy)."""
        return self._require_episode().frames[-1].copy()

    @property
    def camera(self) -> Camera:
        """The camera of the current episode."""
        return self._require_episode().camera

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetOutput:
        super().reset(seed=seed)
        self.episode = self.world.new_episode(self.np_random, seed, options)
        return self.world.observation(self.episode), self.world.info(self.episode)

    def step(self, action: np.ndarray) -> StepOutput:
        episode = self._require_episode()
        self.world.advance([episode], np.asarray(action)[None])
        reward, success, _ = self.world.reward(episode)
        return self.world.observation(episode), reward, success, False, self.world.info(episode)

    def render(self) -> np.ndarray | None:
        """The newest frame, its prompt or both side by side (``render_view``); needs ``render_mode``."""
        if self.render_mode is None:
            gym.logger.warn("render() needs a render_mode; create the env with render_mode='rgb_array'")
            return None
        return self.world.render(self._require_episode(), self.render_view)

    def close(self) -> None:
        world = self.__dict__.get("world")
        if world is not None:
            world.close()

    def _require_episode(self) -> imagined_world.ImaginedEpisode:
        if self.episode is None:
            raise gym.error.ResetNeeded("call reset() before step(), render() or reading the frame")
        return self.episode
