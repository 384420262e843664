"""Training clips cut from recorded episodes: context frames, target frames, their prompts, loss weights.

Prompts are rendered here from the *commanded* robot state (never the achieved one) with the episode's own
camera, so the same recording trains every prompt kind. The loss-weight map marks the interaction region:
the gripper in the target frames (its keypoints projected, drawn as discs), as the paper amplifies the loss
there, and the manipulated object, both where it is in the target frames and where it was in the last
context frame (a pushed cube must appear at its new place and vanish from its old one). The trainer
multiplies the diffusion loss by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from vap_env.data import Episode, EpisodeDataset
from vap_env.kinematics import Robot
from vap_env.prompts import ActionPrompter, prompt_kind
from vap_env.prompts.warp import warp_episode
from vap_env.train.clip_cache import ClipCache, episode_key

OBJECT_MOVES = 0.002
"""m: the object displacement over a clip's target above which a clip shows contact (``object_moves``)."""


@dataclass
class ClipConfig:
    """How clips are cut.

    Args:
        prompt: Prompt kind, a name in ``vap_env.prompts.PROMPT_KINDS``.
        context_frames: Frames the model is conditioned on.
        target_frames: Frames the model generates per step.
        interaction_weight: Loss weight inside the gripper region (1 disables the amplification).
        interaction_radius: Radius of the gripper region as a fraction of the image size.
        object_weight: Extra loss weight on the object's pixels (its recorded mask, dilated by
            ``object_dilation`` pixels) in the target frames and in the last context frame; 0 disables it.
        object_dilation: Pixels by which the object masks grow.
        rollout_frames: Frames between the context and the target that training on the model's own
            rollouts generates (``WorldModelTrainConfig.rollout_fraction``): each clip is then
            ``context_frames + rollout_frames + target_frames`` frames, its items' ``context`` the first
            ``context_frames + rollout_frames``. 0 for plain clips.
        warped_context: Motion-compensated context (``WorldModelConfig.warped_context``): the context of
            each clip drops its oldest frame and ends with its newest frame's robot moved to the first
            target frame's commanded state (:func:`vap_env.prompts.warp.warp_to_pose`).
        object_warp: With ``warped_context``, the object in that frame is moved to where it is in the
            first target frame too (:func:`vap_env.prompts.warp.move_object`; ``WorldModelConfig.
            object_warp``).
    """

    prompt: str = "skeleton"
    context_frames: int = 1
    target_frames: int = 1
    interaction_weight: float = 3.0
    interaction_radius: float = 0.08
    object_weight: float = 0.0
    object_dilation: int = 2
    rollout_frames: int = 0
    warped_context: bool = False
    object_warp: bool = False

    def __post_init__(self) -> None:
        prompt_kind(self.prompt)  # ValueError naming the valid kinds
        if self.object_warp and not self.warped_context:
            raise ValueError(
                "`object_warp` moves the object in the warped context: it needs `warped_context`"
            )
        if self.warped_context and self.rollout_frames:
            raise ValueError(
                "a motion-compensated context (`warped_context`) is warped from recorded frames: training on "
                "the model's own rollouts does not support it yet; set `rollout_fraction` to 0"
            )
        if self.context_frames < 1 or self.target_frames < 1:
            raise ValueError(
                f"`context_frames` and `target_frames` must be >= 1, got {self.context_frames}, "
                f"{self.target_frames}"
            )
        if self.interaction_weight < 1:
            raise ValueError(
                f"`interaction_weight` must be >= 1 (1 switches it off), got {self.interaction_weight}"
            )
        if self.rollout_frames < 0:
            raise ValueError(f"`rollout_frames` must be >= 0, got {self.rollout_frames}")
        if self.object_weight < 0 or self.object_dilation < 0:
            raise ValueError(
                f"`object_weight` and `object_dilation` must be >= 0, got {self.object_weight}, "
                f"{self.object_dilation}"
            )

    @property
    def leading_frames(self) -> int:
        """Frames of a clip before its target: the context and the rollout frames."""
        return self.context_frames + self.rollout_frames

    @property
    def clip_length(self) -> int:
        return self.leading_frames + self.target_frames


def render_episode_prompts(episode: Episode, robot: Robot, kind: str) -> np.ndarray:
    """Prompts of every frame of an episode from its commanded states: (T, H, W, 3) uint8 or (T, D) float32."""
    prompter = ActionPrompter(robot, episode.camera, kind)
    return np.stack(
        [
            prompter.render(q, g)
            for q, g in zip(episode.commanded_joints, episode.commanded_gripper, strict=True)
        ]
    )


def _rendered(
    episode: Episode, robot: Robot, config: ClipConfig, cache: ClipCache | None
) -> dict[str, np.ndarray]:
    """An episode's prompts (and, with a warped context, its warped frames), from ``cache`` if it has them."""
    names = ("prompts", "warped") if config.warped_context else ("prompts",)
    warp = ("robot+object" if config.object_warp else "robot") if config.warped_context else "none"
    key = episode_key(episode, config.prompt, warp) if cache is not None else ""
    if cache is not None and (stored := cache.load(key, names)) is not None:
        return stored
    rendered = {"prompts": render_episode_prompts(episode, robot, config.prompt)}
    if config.warped_context:
        objects = (episode.object_poses, episode.object_mask) if config.object_warp else None
        rendered["warped"] = warp_episode(
            episode.frames,
            robot,
            episode.camera,
            episode.commanded_joints,
            episode.commanded_gripper,
            objects,
        )
    if cache is not None:
        cache.save(key, rendered)
    return rendered


def interaction_masks(episode: Episode, robot: Robot, radius: float) -> np.ndarray:
    """(T, H, W) bool: discs around the gripper keypoints (commanded state) in each frame."""
    h, w = episode.image_size
    grip = sorted({i for b in robot.graph.bones if b.gripper for i in (b.start, b.end)})
    r = max(1, int(round(radius * min(h, w))))
    masks = np.zeros((episode.num_frames, h, w), dtype=np.uint8)
    for t, (q, g) in enumerate(zip(episode.commanded_joints, episode.commanded_gripper, strict=True)):
        uv, z = episode.camera.project(robot.fk(q, g)[grip])
        for (u, v), d in zip(uv, z, strict=True):
            if d > 0 and np.isfinite(u) and np.isfinite(v):
                cv2.circle(masks[t], (int(round(u)), int(round(v))), r, 1, -1)
    return masks.astype(bool)


def dilated_object_masks(episode: Episode, dilation: int) -> np.ndarray:
    """(T, H, W) bool: the episode's object masks grown by ``dilation`` pixels."""
    if dilation == 0:
        return episode.object_mask.astype(bool)
    kernel = np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in episode.object_mask]).astype(bool)


class ClipDataset(torch.utils.data.Dataset):
    """Every window of ``clip_length`` consecutive frames of every episode (see :class:`ClipConfig`).

    With several context frames, the first windows of an episode start before it and repeat its first frame
    (and prompt) in the missing context places, as the imagined env fills its context at reset: the model
    learns the first step it will be asked for.

    Items are dicts of tensors:
        ``context`` (Tc, 3, H, W) and ``target`` (Tf, 3, H, W) float in [-1, 1] (``Tc`` counts the rollout
        frames too);
        ``prompts`` (Tc + Tf, 3, H, W) float in [-1, 1], or (Tc + Tf, D) float for the ``state`` prompt;
        ``weight`` (Tf, 1, H, W) float loss weights; ``episode`` and ``start`` indices.

    Args:
        episodes: A dataset or a list of episodes (all of one robot and image size).
        config: How to cut clips.
        progress: Show a progress bar while rendering prompts.
        cache: Where to keep (and look for) each episode's rendered prompts and warped frames
            (:mod:`vap_env.train.clip_cache`); ``None`` renders them every time.
    """

    def __init__(
        self,
        episodes: EpisodeDataset | list[Episode],
        config: ClipConfig,
        progress: bool = False,
        cache: ClipCache | None = None,
    ) -> None:
        self.config = config
        eps = list(episodes)
        if not eps:
            raise ValueError("no episodes to cut clips from")
        robots, sizes = {e.robot for e in eps}, {e.image_size for e in eps}
        if len(robots) != 1 or len(sizes) != 1:
            raise ValueError(
                f"episodes must share one robot and image size, got robots {robots}, sizes {sizes}"
            )
        self.robot_name, self.image_size = robots.pop(), sizes.pop()
        robot = Robot(self.robot_name)
        self.frames, self.prompts, self.masks, self.objects, self.index = [], [], [], [], []
        self.object_xy: list[np.ndarray] = []  # per episode, (T, 2) the object's place on the table
        # with a motion-compensated context: per episode, frame t moved to frame t + 1's commanded state
        self.warped: list[np.ndarray] = []
        for e_idx, ep in enumerate(tqdm(eps, desc="rendering clips", disable=not progress)):
            self.frames.append(ep.frames)
            rendered = _rendered(ep, robot, config, cache)
            self.prompts.append(rendered["prompts"])
            if config.warped_context:
                self.warped.append(rendered["warped"])
            self.object_xy.append(np.asarray(ep.object_poses[:, :2], dtype=np.float64))
            self.masks.append(interaction_masks(ep, robot, config.interaction_radius))
            if config.object_weight > 0:
                self.objects.append(dilated_object_masks(ep, config.object_dilation))
            first = 1 - config.leading_frames  # windows whose context starts before the episode
            self.index += [(e_idx, s) for s in range(first, ep.num_frames - config.clip_length + 1)]
        robot.close()
        if not self.index:
            raise ValueError(f"episodes are shorter than a clip ({config.clip_length} frames)")

    def __len__(self) -> int:
        return len(self.index)

    def object_moves(self, threshold: float = OBJECT_MOVES) -> np.ndarray:
        """``(len,)`` bool: the clips whose object moves at least ``threshold`` m on the table from the last
        frame before the target to the last target frame (an object-free task's poses are zeros: never)."""
        c = self.config.leading_frames
        moves = np.zeros(len(self.index), dtype=bool)
        for i, (e, s) in enumerate(self.index):
            at = self.frame_indices(s)
            xy = self.object_xy[e]
            moves[i] = np.linalg.norm(xy[at[-1]] - xy[at[c - 1]]) >= threshold
        return moves

    def frame_indices(self, start: int) -> np.ndarray:
        """The episode frames of the window starting at ``start`` (places before the episode: frame 0)."""
        return np.maximum(np.arange(start, start + self.config.clip_length), 0)

    @staticmethod
    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [-1, 1]."""
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, s = self.index[i]
        c = self.config.leading_frames
        at = self.frame_indices(s)
        frames = self.to_tensor(self.frames[e][at])
        if self.warped:
            # the oldest context frame out, the newest one moved to the first target frame's state in
            warped = self.to_tensor(self.warped[e][at[c - 1]][None])
            frames = torch.cat([frames[1:c], warped, frames[c:]])
        prompts = self.prompts[e][at]
        prompts = torch.from_numpy(prompts) if prompts.ndim == 2 else self.to_tensor(prompts)
        weight = (
            1.0 + (self.config.interaction_weight - 1.0) * torch.from_numpy(self.masks[e][at[c:]]).float()
        )
        if self.objects:
            objects = self.objects[e]
            # where the object is in each target frame, and where it was in the last context frame
            region = objects[at[c:]] | objects[at[c - 1]][None]
            weight = weight + self.config.object_weight * torch.from_numpy(region).float()
        return {
            "context": frames[:c],
            "target": frames[c:],
            "prompts": prompts,
            "weight": weight[:, None],
            "episode": torch.tensor(e),
            "start": torch.tensor(s),
        }
