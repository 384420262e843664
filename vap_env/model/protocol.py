"""The seam between the environments and a world-model backbone: :class:`WorldModel` and its spec.

The world-model envs (:mod:`vap_env.envs`) and evaluation see a backbone through this protocol only: what it
was trained for (:class:`WorldModelSpec`), ``generate`` and ``save_pretrained``, plus the few
``torch.nn.Module`` calls they make (``to``, ``eval``, ``device``). The CogVideoX action-to-video model
(:class:`~vap_env.model.cogvideox.model.ActionToVideoModel`) is one backbone; another (say a DIAMOND-style
EDM U-Net) is a class that meets the protocol, names itself in its ``config.json`` (``_class_name``) and is
registered with :func:`vap_env.model.loading.register_backbone`. Nothing in the envs changes.

Light on purpose (no torch import at run time), so that the command line and the env registration can
import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from typing import Self  # Python >= 3.11; annotations only, so 3.10 imports this module too

    import torch

    from vap_env.model.codec import Codec

__all__ = ["WorldModel", "WorldModelSpec"]


@dataclass(frozen=True)
class WorldModelSpec:
    """What a world model was trained for: everything the envs and evaluation read off a model.

    Args:
        robot: The robot description name its frames show (``robots/NAME.toml``).
        image_size: ``(H, W)`` of the frames it reads and generates.
        prompt: The visual action prompt kind it is conditioned on (``vap_env.prompts``: ``skeleton``,
            ``depth_skeleton``, ``mask``, ``state`` or ``none``).
        prompt_channels: Channels of an image prompt (3 for RGB skeletons).
        context_frames: ``Tc``, the frames it conditions on.
        frames_per_step: ``Tf``, the frames one ``generate`` call makes.
        state_dim: Length of a ``state`` prompt vector (joints + gripper; 0 for image prompts).
        num_inference_steps: Its default number of denoising steps.
        warped_context: Whether its newest context frame is the frame before it with the robot moved to the
            next commanded state (``WorldModelConfig.warped_context``): the envs build that context.
        object_warp: Whether the object in that frame is moved too, by the model's ``object_dynamics``
            attribute (an :class:`~vap_env.model.object_dynamics.ObjectDynamics`;
            ``WorldModelConfig.object_warp``).
    """

    robot: str
    image_size: tuple[int, int]
    prompt: str
    prompt_channels: int
    context_frames: int
    frames_per_step: int
    state_dim: int
    num_inference_steps: int
    warped_context: bool = False
    object_warp: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"`image_size` must be (H, W) of positive sizes, got {self.image_size}")
        for name in ("context_frames", "frames_per_step", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")


@runtime_checkable
class WorldModel(Protocol):
    """An action-conditioned video model the world-model envs can run.

    Attributes:
        spec: What it was trained for (robot, frame size, prompt kind, frames per call, ...).
        codec: Its frame codec (``vap_env.model.codec.Codec``), whose reconstructions evaluation fits its
            robot segmenter on; ``None`` for a model that generates pixels directly.
        device: Where it runs.
    """

    codec: Codec | None

    @property
    def spec(self) -> WorldModelSpec: ...

    @property
    def device(self) -> torch.device: ...

    def generate(
        self,
        context_frames: torch.Tensor,
        prompts: torch.Tensor | None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Generates the next ``frames_per_step`` frames of a batch of sequences.

        Args:
            context_frames: ``(B, Tc, 3, H, W)`` in ``[-1, 1]``.
            prompts: ``(B, Tc + Tf, Cp, H, W)`` image prompts in ``[-1, 1]``, ``(B, Tc + Tf, D)`` states, or
                ``None`` for the ``none`` kind.
            num_inference_steps: Denoising steps; ``spec.num_inference_steps`` when ``None``.
            generator: Source of all noise (one per batch row, or one for the batch): the same seeds give
                the same frames.
            guidance_scale: Classifier-free guidance over the control signal; 1 is off.

        Returns:
            ``(B, Tf, 3, H, W)`` float32 frames in ``[-1, 1]``.
        """
        ...

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Writes the model into a directory whose ``config.json`` names its class (``_class_name``)."""
        ...

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: torch.device | str = "cpu") -> Self:
        """Loads a model that :meth:`save_pretrained` wrote (what :func:`~vap_env.model.loading.load_world_model`
        calls on the class ``config.json`` names)."""
        ...

    def to(self, device: torch.device | str) -> Self: ...

    def eval(self) -> Self: ...
