"""The arguments the world-model envs share: :class:`WorldModelEnvConfig`, validated when it is built.

:class:`~vap_env.envs.imagined_world.ImaginedWorld`, :class:`~vap_env.envs.world_model_env.WorldModelEnv` and
:class:`~vap_env.envs.vector_env.WorldModelVectorEnv` take one config (the world model stays a separate
argument: it is a thing to run, not a setting). ``gym.make(id, **kwargs)`` and ``gym.make_vec(...)`` keep
taking the fields as keyword arguments; :meth:`WorldModelEnvConfig.build` turns them into the config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vap_env.camera import Camera
from vap_env.modes import ACTION_MODES, CAMERA_MODES, OBS_MODES
from vap_env.tasks import TASKS

if TYPE_CHECKING:
    import torch

__all__ = ["RENDER_VIEWS", "RESET_MODES", "WorldModelEnvConfig", "check_render"]

RESET_MODES = ("sim", "episode", "image")
RENDER_VIEWS = ("frame", "prompt", "both")


@dataclasses.dataclass(frozen=True)
class WorldModelEnvConfig:
    """Configuration of the world-model envs (everything but the model and the render arguments).

    Args:
        robot: Checked against the model's robot (``None``: the model's); the model decides.
        image_size: Checked against the model's square frame size (``None``: the model's).
        task: ``"push"`` or ``"reach"``: the scoring code, the state layout and the simulator start.
        action_mode: ``"ee_delta"`` (TCP delta + gripper) or ``"joint_delta"``.
        obs_mode: ``"image"``, ``"state"`` or ``"both"`` (a Dict).
        camera: ``"fixed"`` (the robot's default camera), ``"random"`` (drawn at each reset) or a
            :class:`~vap_env.camera.Camera`.
        reset_mode: Where an episode starts: ``"sim"`` (the simulator's first frame for the reset seed),
            ``"episode"`` (a recorded episode of ``dataset``) or ``"image"`` (``reset(options=...)``).
        dataset: The recorded dataset directory (``vap-env collect``) of ``reset_mode="episode"``.
        num_inference_steps: Denoising steps per generated frame (``None``: the model's default).
        guidance_scale: Classifier-free guidance over the prompt (1 = off).
        device: Where a model loaded from a directory runs (``None``: the CPU; a model object stays put).
        max_ee_step: Metres of TCP motion per unit of ``ee_delta`` action.
        max_joint_step: Radians per unit of ``joint_delta`` action.
    """

    robot: str | None = None
    image_size: int | None = None
    task: str = "push"
    action_mode: str = "ee_delta"
    obs_mode: str = "image"
    camera: str | Camera = "fixed"
    reset_mode: str = "sim"
    dataset: str | Path | None = None
    num_inference_steps: int | None = None
    guidance_scale: float = 1.0
    device: torch.device | str | None = None
    max_ee_step: float = 0.02
    max_joint_step: float = 0.05

    def __post_init__(self) -> None:
        _check_choices(
            task=(self.task, tuple(TASKS)),
            action_mode=(self.action_mode, ACTION_MODES),
            obs_mode=(self.obs_mode, OBS_MODES),
            reset_mode=(self.reset_mode, RESET_MODES),
        )
        if not isinstance(self.camera, Camera) and self.camera not in CAMERA_MODES:
            raise ValueError(
                f"`camera` must be one of {', '.join(CAMERA_MODES)} or a Camera; got {self.camera!r}"
            )
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {self.num_inference_steps}")
        if self.reset_mode == "episode" and self.dataset is None:
            raise ValueError(
                "reset_mode='episode' needs `dataset`: a directory recorded by `vap-env collect`"
            )
        # numbers as the controller and the sampler take them (an int 1 and a float 1.0 give one config)
        for name in ("guidance_scale", "max_ee_step", "max_joint_step"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def build(cls, config: WorldModelEnvConfig | None = None, **overrides: Any) -> WorldModelEnvConfig:
        """``config`` with ``overrides`` replacing its fields (the defaults when ``config`` is ``None``).

        This is how the envs take both a config and ``gym.make`` keyword arguments: the keyword arguments
        of a registered id (``robot``, ``task``) and those given to ``gym.make`` are overrides.

        Raises:
            TypeError: If ``config`` is not a :class:`WorldModelEnvConfig` or an override is not a field
                (the message lists the fields).
            ValueError: If the result is invalid (see the field docs).
        """
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"`config` must be a {cls.__name__} or None, got {type(config).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"unknown world-model env arguments {unknown}; valid: {', '.join(names)}")
        if config is None:
            return cls(**overrides)
        return dataclasses.replace(config, **overrides) if overrides else config


def check_render(render_mode: str | None, render_view: str, modes: list[str]) -> None:
    """Checks the ``render_mode`` (``None`` or one of ``modes``) and ``render_view`` (one of
    :data:`RENDER_VIEWS`) arguments of the world-model envs; raises ``ValueError`` naming the bad one.

    They stay env arguments, outside the config: ``render_mode`` is Gymnasium's own init argument.
    """
    if render_mode not in (None, *modes):
        raise ValueError(f"`render_mode` must be None or one of {modes}; got {render_mode!r}")
    _check_choices(render_view=(render_view, RENDER_VIEWS))


def _check_choices(**values: tuple[Any, tuple]) -> None:
    """Raises ``ValueError`` naming the first argument whose value is not one of its valid ones."""
    for name, (value, valid) in values.items():
        if value not in valid:
            raise ValueError(f"`{name}` must be one of {', '.join(valid)}; got {value!r}")
