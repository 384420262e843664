"""The prompt-kind table: every kind of visual action prompt, in one place.

:data:`PROMPT_KINDS` is the only list of prompt kinds. The prompter renders through it, the world-model
config validates against it and the model, envs and trainers read a kind's ``conditioning`` and
``channels`` from it instead of testing names. A new kind is one :class:`PromptKind` entry (plus a test).

Import-light on purpose (NumPy only): :mod:`vap_env.model.config` reads this table and must stay free of
PyBullet, OpenCV and torch. Render functions get everything they draw with from the prompter they are
given, and import renderers only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from vap_env.description import SkeletonGraph
    from vap_env.prompts.prompter import ActionPrompter
    from vap_env.prompts.skeleton import SkeletonRenderer

Conditioning = Literal["image", "vector", "none"]
CONDITIONINGS: tuple[str, ...] = ("image", "vector", "none")


@dataclass(frozen=True)
class PromptKind:
    """One kind of visual action prompt.

    Attributes:
        name: The kind's name (``WorldModelConfig.prompt``, ``SimEnv(prompt=...)``).
        conditioning: How the world model reads it: ``"image"`` drives the ControlNet; ``"vector"`` is
            embedded (not an image, e.g. ``state``); ``"none"`` means no action conditioning (the kind still
            renders an all-zero image so shapes stay).
        channels: Channels of the rendered image (3), or ``None`` for vector kinds, whose length comes from
            the robot (:attr:`ActionPrompter.state_dim`).
        render: ``render(prompter, q, gripper)``: the prompt of a robot state, (H, W, channels) uint8 through
            the prompter's camera, or a float32 vector for vector kinds.
        skeleton: Builds the prompter's skeleton renderer from the robot's skeleton graph (what skeleton
            kinds and overlays draw with); ``None``: the plain :class:`~vap_env.prompts.skeleton.
            SkeletonRenderer`.
    """

    name: str
    conditioning: Conditioning
    channels: int | None
    render: Callable[[ActionPrompter, np.ndarray, float], np.ndarray]
    skeleton: Callable[[SkeletonGraph], SkeletonRenderer] | None = None

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"prompt kind {self.name!r}: `conditioning` must be one of {', '.join(CONDITIONINGS)}, "
                f"got {self.conditioning!r}"
            )
        if (self.channels is None) != (self.conditioning == "vector"):
            raise ValueError(
                f"prompt kind {self.name!r}: `channels` must be None for vector kinds and an image's "
                f"channel count otherwise, got {self.channels} for conditioning {self.conditioning!r}"
            )
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"prompt kind {self.name!r}: `channels` must be >= 1, got {self.channels}")

    @property
    def is_image(self) -> bool:
        """Whether the kind renders an image (image kinds and ``none``'s zeros), not a vector."""
        return self.channels is not None


# ------------------------------------------------------------------------------------------------- renders
def _render_skeleton(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    uv, z = prompter.project(q, gripper)
    return prompter.skeleton.render(uv, z, (prompter.camera.height, prompter.camera.width))


def _depth_skeleton_renderer(graph: SkeletonGraph) -> SkeletonRenderer:
    from vap_env.prompts.skeleton import DepthSkeletonRenderer  # OpenCV: only when a prompter is built

    return DepthSkeletonRenderer(graph)


def _render_mask(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    mask, _ = prompter.robot.render_mask_depth(q, gripper, prompter.camera)
    return _grey_to_rgb(mask.astype(np.uint8) * 255)


def _render_depth(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    return _depth_image(prompter, *prompter.robot.render_mask_depth(q, gripper, prompter.camera))


def _render_hull(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    from vap_env.prompts.hull import render_hull_mask_depth  # PyBullet and OpenCV: only when rendering

    return _depth_image(prompter, *render_hull_mask_depth(prompter.robot, q, gripper, prompter.camera))


def _depth_image(prompter: ActionPrompter, mask: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """A robot-only render as grey levels: nearer = brighter, over the depth range the robot occupies in this
    view; black where there is no robot."""
    d = np.where(mask, depth, np.nan)
    lo, hi = _robot_depth_range(prompter)
    return _grey_to_rgb(np.where(mask, 255 - 200 * np.clip((d - lo) / (hi - lo), 0, 1), 0).astype(np.uint8))


def _robot_depth_range(prompter: ActionPrompter) -> tuple[float, float]:
    """(near, far) depth (m) around the description camera's target: where the robot is seen."""
    d = np.linalg.norm(prompter.camera.position - np.array(prompter.robot.desc.camera.target))
    return max(d - 0.8, 0.05), d + 0.8


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _render_state(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    q = np.asarray(q, dtype=np.float32)
    return np.concatenate([q, [np.float32(gripper)]]).astype(np.float32)


def _render_none(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    return np.zeros((prompter.camera.height, prompter.camera.width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------- table
PROMPT_KINDS: dict[str, PromptKind] = {
    kind.name: kind
    for kind in (
        # coloured bones, joint dots and gripper fingers, projected through the camera (the default)
        PromptKind("skeleton", "image", 3, _render_skeleton),
        # the same with depth in bone brightness and width
        PromptKind("depth_skeleton", "image", 3, _render_skeleton, skeleton=_depth_skeleton_renderer),
        # a robot-only PyBullet render: silhouette, or depth as grey levels (the paper's mesh/depth prompt)
        PromptKind("mask", "image", 3, _render_mask),
        PromptKind("depth", "image", 3, _render_depth),
        # the same depth picture from convex pieces of the meshes (vap_env.prompts.hull): ~1 ms, not ~25
        PromptKind("hull", "image", 3, _render_hull),
        # the raw joint vector plus gripper: not an image, the model embeds it
        PromptKind("state", "vector", None, _render_state),
        # the no-action baseline: an all-zero image keeps the shapes of the image kinds
        PromptKind("none", "none", 3, _render_none),
    )
}
"""Prompt kinds by name, the one list of them (see :class:`PromptKind`)."""


def prompt_kind(name: Any) -> PromptKind:
    """The :class:`PromptKind` called ``name``.

    Raises:
        ValueError: If there is none; the message names the valid kinds.
    """
    try:
        return PROMPT_KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown prompt kind {name!r}; valid kinds: {', '.join(PROMPT_KINDS)}") from None


def kinds_with(conditioning: Conditioning) -> tuple[str, ...]:
    """Names of the kinds of one ``conditioning``, in table order (e.g. ``"image"``: the ControlNet's)."""
    return tuple(name for name, kind in PROMPT_KINDS.items() if kind.conditioning == conditioning)
