"""Imagined episodes: the machinery shared by the world-model environments.

:class:`ImaginedWorld` is shared by :class:`~vap_env.envs.world_model_env.WorldModelEnv` and the batched
:class:`~vap_env.envs.vector_env.WorldModelVectorEnv`: starting episodes (from the simulator's first frame, a
recorded episode or a given image), and advancing any number of them with one batched ``model.generate``
call. :class:`ImaginedEpisode` is one episode's state, DIAMOND-style: the commanded robot state, rolling
buffers of the last ``context_frames`` frames and prompts, the task-state estimate and its own noise
generator, so a batch of episodes reproduces the same episodes run one by one. The model is any
:class:`~vap_env.model.protocol.WorldModel` (or what :func:`~vap_env.model.loading.load_world_model` loads);
the world reads only its ``spec`` and calls only its ``generate``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vap_env.camera import Camera, ViewpointSampler
from vap_env.control import ActionController, RobotCommand, action_space, check_action, workspace_box
from vap_env.data import EpisodeDataset
from vap_env.description import load_description
from vap_env.envs.config import WorldModelEnvConfig
from vap_env.envs.estimation import CubeDetector, TaskStateEstimate, estimate_task_state
from vap_env.envs.interface import EnvInterface
from vap_env.kinematics import Robot
from vap_env.model.codec import frames_to_tensor, tensor_to_frames
from vap_env.model.loading import load_world_model
from vap_env.model.protocol import WorldModel, WorldModelSpec
from vap_env.prompts import ActionPrompter, prompt_kind
from vap_env.prompts.warp import ObjectSprite, PosedRobot, RobotAppearance, move_object, warp_posed
from vap_env.sim.env import SimEnv, observation_space, state_layout
from vap_env.tasks import task_spec

_OBJECT_REACH = 0.1  # m; how far past the TCP workspace a pushed cube may end up


@dataclass
class ImaginedEpisode:
    """One imagined episode (all arrays owned by it).

    Attributes:
        controller: Its commanded robot state and action mapping.
        camera: The camera its frames are seen from.
        prompter: Renders prompts through ``camera``.
        goal: (3,) goal position.
        frames: (Tc, H, W, 3) uint8, the last ``context_frames`` frames, newest last.
        prompts: (Tc, H, W, 3) uint8 or (Tc, D) float32, their prompts.
        estimate: The task state estimated from the newest frame.
        generator: The source of this episode's sampler noise (seeded from the env's ``np_random``).
        posed: For a motion-compensated model, the robot posed (:class:`~vap_env.prompts.warp.PosedRobot`) at
            the last state a frame was warped to: the next step reuses it when it starts from that state.
        appearance: For a motion-compensated model, the robot's rendered look through this episode's camera
            (:class:`~vap_env.prompts.warp.RobotAppearance`), reused from step to step.
        sprite: For a model that moves the object too (``spec.object_warp``), the object as the first
            frame shows it (:class:`~vap_env.prompts.warp.ObjectSprite`); ``None`` when it was not found
            there (the video model alone then moves it).
        object_position: (3,) where the model's object dynamics has the object: the sprite's position at
            the reset, then moved by the dynamics at every step (its own state, never re-read from the
            frames, as the robot's command is never re-read either). It is the task-state estimate's object
            position, which observations and rewards read: the frames are drawn from it (the sprite moved
            there in the context), and a detector on generated frames mistakes the red smears a generated
            gripper leaves for the cube (experiment 16 in ``docs/results/interaction_experiments.md``).
    """

    controller: ActionController
    camera: Camera
    prompter: ActionPrompter
    goal: np.ndarray
    frames: np.ndarray
    prompts: np.ndarray
    estimate: TaskStateEstimate
    generator: torch.Generator
    posed: PosedRobot | None = None
    appearance: RobotAppearance | None = None
    sprite: ObjectSprite | None = None
    object_position: np.ndarray | None = None

    @property
    def command(self) -> RobotCommand:
        return self.controller.command


class ImaginedWorld:
    """Starts and advances imagined episodes of one task with one world model.

    Args:
        model: A :class:`~vap_env.model.protocol.WorldModel`, a saved model directory, or ``"default"``
            (:func:`~vap_env.model.loading.load_world_model`).
        config: The env configuration (:class:`~vap_env.envs.config.WorldModelEnvConfig`; its defaults when
            ``None``).
        **overrides: Fields of the configuration given as keyword arguments (they replace ``config``'s).

    Attributes:
        model: The world model.
        spec: Its :class:`~vap_env.model.protocol.WorldModelSpec` (robot, frame size, prompt kind, ...).
        config: The configuration.
        interface: The :class:`~vap_env.envs.interface.EnvInterface` its envs expose to policies.
        robot: The kinematic robot.
        image_size: The side of the model's square frames.
    """

    def __init__(
        self,
        model: WorldModel | str | Path,
        config: WorldModelEnvConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.config = cfg = WorldModelEnvConfig.build(config, **overrides)
        self.model = load_world_model(model, cfg.device)
        self.spec: WorldModelSpec = self.model.spec
        c = self.spec
        self.image_size = self._check_model(cfg.robot, cfg.image_size)
        self.desc = load_description(c.robot)
        self.robot = Robot(self.desc)
        if prompt_kind(c.prompt).conditioning == "vector" and c.state_dim != self.robot.num_joints + 1:
            raise ValueError(
                f"the model's state prompts have {c.state_dim} values; robot {c.robot!r} "
                f"has {self.robot.num_joints} joints + gripper"
            )
        self.scorer = task_spec(cfg.task).scoring()  # reward and success rules, no scene
        self.detector = CubeDetector()
        self.object_dynamics = getattr(self.model, "object_dynamics", None) if c.object_warp else None
        if c.object_warp and self.object_dynamics is None:
            raise ValueError(
                "the world model moves the object by its object dynamics (`object_warp`) but has none: "
                "load it with `ActionToVideoModel.from_pretrained` from a directory that holds "
                "`object_dynamics/` (written by `vap-env train --object-warp`)"
            )
        self.interface = EnvInterface(
            task_name=cfg.task,
            action_mode=cfg.action_mode,
            state_layout=state_layout(self.robot.num_joints, self.scorer.has_object),
            workspace=workspace_box(self.robot),
            max_ee_step=cfg.max_ee_step,
            max_joint_step=cfg.max_joint_step,
        )
        self.action_space = action_space(cfg.action_mode, self.robot.num_joints)
        self.observation_space = observation_space(self.interface.state_layout, cfg.obs_mode, self.image_size)
        self.dataset = self._open_dataset(cfg.dataset) if cfg.reset_mode == "episode" else None
        self._sampler = ViewpointSampler.around(self.desc.camera) if cfg.camera == "random" else None
        self._sim: SimEnv | None = None
        self._fallback = np.array(
            [np.mean(self.desc.workspace_x), np.mean(self.desc.workspace_y), self.detector.centre_height]
        )
        # the cube cannot be far outside the TCP's reach: a red blob there is a generation artefact
        workspace = self.interface.workspace
        self.object_region = (workspace[0] - _OBJECT_REACH, workspace[1] + _OBJECT_REACH)

    # ----------------------------------------------------------------------------------------- checks
    def _check_model(self, robot: str | None, image_size: int | None) -> int:
        """The side of the model's square frames, after checking the model fits ``robot`` and
        ``image_size`` (when given) and the envs' RGB prompts."""
        c = self.spec
        if robot is not None and robot != c.robot:
            raise ValueError(
                f"the world model was trained for robot {c.robot!r}, not {robot!r}: pass a model "
                f"trained for {robot!r}, or robot={c.robot!r}"
            )
        height, width = c.image_size
        if image_size is not None and (height, width) != (image_size, image_size):
            raise ValueError(
                f"the world model makes {height}x{width} frames, not {image_size}x{image_size}: "
                f"pass a model trained at that size, or image_size={height}"
            )
        if height != width:
            raise ValueError(
                f"vap-env envs observe square images; the world model makes {height}x{width} frames"
            )
        kind = prompt_kind(c.prompt)
        if kind.conditioning == "image" and c.prompt_channels != kind.channels:
            raise ValueError(f"image prompts are RGB; the model expects {c.prompt_channels} prompt channels")
        return height

    def _open_dataset(self, dataset: str | Path) -> EpisodeDataset:
        data = EpisodeDataset(dataset)
        if data.robot != self.spec.robot or tuple(data.image_size) != (self.image_size, self.image_size):
            raise ValueError(
                f"dataset {dataset} holds {data.robot!r} episodes at {data.image_size}; the world "
                f"model is for {self.spec.robot!r} at {self.image_size}x{self.image_size}"
            )
        if data.task != self.config.task:
            raise ValueError(
                f"dataset {dataset} holds {data.task!r} episodes, the env's task is {self.config.task!r}"
            )
        if len(data) == 0:
            raise ValueError(f"dataset {dataset} holds no episodes")
        return data

    # ----------------------------------------------------------------------------------------- episodes
    def new_episode(
        self, np_random: np.random.Generator, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> ImaginedEpisode:
        """Starts an episode as ``reset_mode`` says, drawing everything random from ``np_random``.

        Args:
            np_random: The env's generator (just seeded by ``reset(seed=...)``, or carried on).
            seed: The reset seed; in ``sim`` mode the simulator is reset with it, so the episode starts from
                exactly the frame ``SimEnv.reset(seed=seed)`` shows (drawn from ``np_random`` when ``None``).
            options: ``episode`` mode: ``{"episode": index}`` (drawn when absent); ``image`` mode: ``image``
                (H, W, 3) uint8, ``joints`` (J,), ``goal`` (3,), optional ``gripper`` (default 1.0, open) and
                ``camera`` (default: the env's camera).
        """
        options = dict(options or {})
        if self.config.reset_mode == "sim":
            _check_option_keys(options, (), "sim")
            sim_seed = int(np_random.integers(2**31 - 1)) if seed is None else int(seed)
            frames, joints, gripper, goal, camera = self._from_sim(sim_seed)
        elif self.config.reset_mode == "episode":
            _check_option_keys(options, ("episode",), "episode")
            frames, joints, gripper, goal, camera = self._from_dataset(np_random, options)
        else:
            _check_option_keys(options, ("image", "joints", "gripper", "goal", "camera"), "image")
            frames, joints, gripper, goal, camera = self._from_image(np_random, options)
        # the sampler's noise: one torch generator per episode, seeded from the env's own generator
        generator = torch.Generator().manual_seed(int(np_random.integers(2**63 - 1)))
        face = self.interface
        controller = ActionController(
            self.robot, face.action_mode, face.max_ee_step, face.max_joint_step, face.workspace
        )
        prompter = ActionPrompter(self.robot, camera, kind=self.spec.prompt)
        prompts = np.stack([prompter.render(q, g) for q, g in zip(joints, gripper, strict=True)])
        controller.reset(joints[-1], float(gripper[-1]))
        ee = self._tcp(controller.command)
        estimate = estimate_task_state(
            face.task_name,
            frames[-1],
            camera,
            ee,
            goal,
            detector=self.detector,
            fallback_object_position=self._fallback,
            region=self.object_region,
        )
        sprite = None
        if self.object_dynamics is not None and estimate.object_visible:
            position = estimate.object_position
            sprite = ObjectSprite.cut(frames[-1], self.detector.cube_mask(frames[-1]), position, camera)
        return ImaginedEpisode(
            controller,
            camera,
            prompter,
            np.asarray(goal, dtype=np.float64),
            frames,
            prompts,
            estimate,
            generator,
            sprite=sprite,
            object_position=None if sprite is None else sprite.position.copy(),
        )

    def _from_sim(self, seed: int) -> tuple:
        if self._sim is None:
            self._sim = SimEnv(
                robot=self.desc,
                task=self.config.task,
                obs_mode="image",
                image_size=self.image_size,
                camera=self.config.camera,
                prompt="none",
                info_prompt=False,  # the first frame and commanded state are all it reads
            )
        frame, info = self._sim.reset(seed=seed)
        frames = np.repeat(frame[None], self.spec.context_frames, axis=0)
        joints = np.repeat(info["commanded_joints"][None], self.spec.context_frames, axis=0)
        gripper = np.full(self.spec.context_frames, info["commanded_gripper"])
        return frames, joints, gripper, info["goal"], self._sim.camera

    def _from_dataset(self, np_random: np.random.Generator, options: dict[str, Any]) -> tuple:
        assert self.dataset is not None
        index = (
            int(options["episode"]) if "episode" in options else int(np_random.integers(len(self.dataset)))
        )
        episode = self.dataset[index]
        tc = self.spec.context_frames
        if episode.num_frames < tc:
            raise ValueError(
                f"episode {index} has {episode.num_frames} frames; the model needs {tc} as context"
            )
        return (
            episode.frames[:tc].copy(),
            episode.commanded_joints[:tc].astype(np.float64),
            episode.commanded_gripper[:tc].astype(np.float64),
            episode.goal,
            episode.camera,
        )

    def _from_image(self, np_random: np.random.Generator, options: dict[str, Any]) -> tuple:
        missing = [k for k in ("image", "joints", "goal") if k not in options]
        if missing:
            raise ValueError(f"reset_mode='image' needs options {missing} (and optionally gripper, camera)")
        image = np.asarray(options["image"])
        size = (self.image_size, self.image_size, 3)
        if image.shape != size or image.dtype != np.uint8:
            raise ValueError(f"options['image'] must be uint8 {size}, got {image.dtype} {image.shape}")
        goal = np.asarray(options["goal"], dtype=np.float64)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"options['goal'] must be 3 finite numbers, got {options['goal']}")
        camera = options.get("camera") or self._episode_camera(np_random)
        if (camera.width, camera.height) != (self.image_size, self.image_size):
            camera = camera.resized(self.image_size, self.image_size)
        tc = self.spec.context_frames
        joints = np.repeat(np.asarray(options["joints"], dtype=np.float64)[None], tc, axis=0)
        gripper = np.full(tc, float(options.get("gripper", 1.0)))
        return np.repeat(image[None], tc, axis=0), joints, gripper, goal, camera

    def _episode_camera(self, np_random: np.random.Generator) -> Camera:
        if isinstance(self.config.camera, Camera):
            return self.config.camera
        if self._sampler is not None:
            return self._sampler.sample(np_random, self.image_size, self.image_size)
        return Camera.from_spec(self.desc.camera, self.image_size, self.image_size)

    # ----------------------------------------------------------------------------------------- stepping
    @torch.inference_mode()
    def advance(self, episodes: list[ImaginedEpisode], actions: np.ndarray) -> None:
        """Applies ``actions`` (N, A) to ``episodes`` (N) with one batched ``generate`` call.

        Each action moves its episode's command (``vap_env.control``); the ``frames_per_step`` commands along
        the way (interpolated in joint space) are drawn as prompts, straight into the one (N, Tc + k, ...)
        prompt batch of the call; the model generates that many frames from the rolling context; the buffers
        roll and the task state is re-estimated from the newest frame. Inference mode, not only ``no_grad``:
        nothing generated here ever reaches autograd, and it spares every op its version counting.
        """
        c, k = self.spec, self.spec.frames_per_step
        shape = self.action_space.shape
        actions = [
            check_action(a, shape, self.interface.action_mode) for a in actions
        ]  # all valid before any moves
        tc = c.context_frames
        prompts = np.empty((len(episodes), tc + k, *episodes[0].prompts.shape[1:]), episodes[0].prompts.dtype)
        contexts = []
        for i, (episode, action) in enumerate(zip(episodes, actions, strict=True)):
            start = episode.command
            end = episode.controller.step(action)
            prompts[i, :tc] = episode.prompts
            commands = episode.controller.interpolate(start, end, k)
            for j, cmd in enumerate(commands):
                prompts[i, tc + j] = episode.prompter.render(cmd.joints, cmd.gripper)
            contexts.append(self._context(episode, start, commands[0]))
        context = frames_to_tensor(np.stack(contexts))
        frames = tensor_to_frames(
            self.model.generate(
                context,
                self._prompt_tensor(prompts),
                self.config.num_inference_steps,
                generator=[e.generator for e in episodes],
                guidance_scale=self.config.guidance_scale,
            )
        )  # (N, k, H, W, 3)
        for episode, new_frames, prompt in zip(episodes, frames, prompts, strict=True):
            episode.frames = np.concatenate([episode.frames, new_frames])[-tc:]
            episode.prompts = prompt[-tc:].copy()  # its own array: the batch is not kept
            estimate = estimate_task_state(
                self.interface.task_name,
                episode.frames[-1],
                episode.camera,
                self._tcp(episode.command),
                episode.goal,
                previous=episode.estimate,
                detector=self.detector,
                region=self.object_region,
            )
            if episode.object_position is not None:
                # the object dynamics' state is the object's position (ImaginedEpisode.object_position);
                # `object_visible` still says whether the generated frame shows the cube
                estimate = dataclasses.replace(estimate, object_position=episode.object_position.copy())
            episode.estimate = estimate

    def _context(self, episode: ImaginedEpisode, now: RobotCommand, first: RobotCommand) -> np.ndarray:
        """The context frames of a step from state ``now`` whose first generated frame is commanded ``first``:
        the episode's frames, or for a motion-compensated model (``spec.warped_context``) all but the oldest
        and the newest with its robot moved to ``first`` (as training clips cut them), and with
        ``spec.object_warp`` its object moved to where the object dynamics sends it."""
        if not self.spec.warped_context:
            return episode.frames
        source = episode.posed
        if source is None or source.gripper != now.gripper or not np.array_equal(source.joints, now.joints):
            source = PosedRobot.at(self.robot, episode.camera, now.joints, now.gripper)
        # else the previous step's target: posing is ~2 of the warp's ~5 ms
        target = PosedRobot.at(self.robot, episode.camera, first.joints, first.gripper)
        if episode.appearance is None:
            episode.appearance = RobotAppearance(self.robot, episode.camera)
        episode.posed = target
        warped = warp_posed(episode.frames[-1], source, target, episode.appearance)
        if (
            episode.sprite is not None
            and episode.object_position is not None
            and self.object_dynamics is not None
        ):
            at = episode.object_position
            xy = self.object_dynamics.step(
                at[None, :2], self._tcp(now)[None], self._tcp(first)[None], np.array([first.gripper])
            )[0]
            to = np.array([xy[0], xy[1], at[2]])
            warped = move_object(warped, episode.sprite, at, to, target.ids)
            episode.object_position = to
        return np.concatenate([episode.frames[1:], warped[None]])

    def _prompt_tensor(self, prompts: np.ndarray) -> torch.Tensor | None:
        """(N, T, H, W, 3) uint8 image prompts -> (N, T, 3, H, W) in [-1, 1]; (N, T, D) states as float."""
        conditioning = prompt_kind(self.spec.prompt).conditioning
        if conditioning == "none":
            return None
        if conditioning == "vector":
            return torch.from_numpy(prompts.astype(np.float32))
        return frames_to_tensor(prompts)

    def _tcp(self, command: RobotCommand) -> np.ndarray:
        """(3,) the TCP of a commanded state by forward kinematics (what the robot knows of itself)."""
        return self.robot.ee_pose(command.joints)[0]

    # ----------------------------------------------------------------------------------------- outputs
    def observation(self, episode: ImaginedEpisode) -> Any:
        """A fresh observation: the newest frame, the state vector (SimEnv's layout), or both."""
        if self.config.obs_mode == "image":
            return episode.frames[-1].copy()
        cmd, est = episode.command, episode.estimate
        parts = [cmd.joints, est.ee_position, [cmd.gripper]]
        if est.object_position is not None:
            parts.append(est.object_position)
        state = np.concatenate([*parts, episode.goal]).astype(np.float32)
        return (
            state if self.config.obs_mode == "state" else {"image": episode.frames[-1].copy(), "state": state}
        )

    def reward(self, episode: ImaginedEpisode) -> tuple[float, bool, dict[str, float]]:
        """(reward, success, reward parts) of the estimated task state, by the task's own reward code."""
        est = episode.estimate
        parts = self.scorer.reward_terms(est.achieved_goal, est.goal, est.ee_position)
        success = bool(self.scorer.is_success(est.achieved_goal, est.goal))
        return float(sum(parts.values())), success, {k: float(v) for k, v in parts.items()}

    def info(self, episode: ImaginedEpisode) -> dict[str, Any]:
        """The commanded robot state, prompt, estimated task state, reward parts and ``is_success``."""
        cmd, est = episode.command, episode.estimate
        info: dict[str, Any] = {
            "commanded_joints": cmd.joints.copy(),
            "commanded_gripper": cmd.gripper,
            "commanded_ee_position": cmd.ee_position.copy(),
            "joints": cmd.joints.copy(),
            "gripper": cmd.gripper,
            "ee_position": est.ee_position.copy(),
            "goal": episode.goal.copy(),
        }
        if est.object_position is not None:
            info["object_position"] = est.object_position.copy()
            info["object_visible"] = est.object_visible
        _, success, parts = self.reward(episode)
        info["is_success"] = success
        info.update(parts)
        info["prompt"] = episode.prompts[-1].copy()
        return info

    def render(self, episode: ImaginedEpisode, view: str) -> np.ndarray:
        """(H, W, 3) uint8 frame or prompt, or (H, 2W, 3) both side by side."""
        frame = episode.frames[-1]
        if view == "frame":
            return frame.copy()
        if prompt_kind(self.spec.prompt).is_image:
            prompt = episode.prompts[-1]
        else:  # a state vector: show the skeleton of the commanded state instead
            cmd = episode.command
            prompt = ActionPrompter(self.robot, episode.camera).render(cmd.joints, cmd.gripper)
        return prompt.copy() if view == "prompt" else np.concatenate([frame, prompt], axis=1)

    def close(self) -> None:
        for part in ("_sim", "robot"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()


def _check_option_keys(options: dict[str, Any], allowed: tuple[str, ...], mode: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"unknown reset options {unknown} for reset_mode={mode!r}; valid: {valid}")
