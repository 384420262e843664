"""A learned model of how the pushed object moves on the table, from the robot's kinematic state.

Why (experiments 10-14 in ``docs/results/interaction_experiments.md``): the video models move the imagined
cube about as far as the simulator does (cube-displacement Pearson 0.97 across policies) but not where the
push sends it (along-push share 0.51, 4 cm across it; found in a fifth of the windows' last frames), because
a sub-token move of a 10-pixel cube is as hard for a transformer of 8-pixel tokens as the arm's was before
the arm was warped by its kinematics. Where the cube goes is a small problem in state space: this MLP, given
where the tool centre point (TCP) is relative to the cube and how it moves, predicts the cube's planar
displacement. Measured on the held-out push episodes (experiment 15a): 3.0 cm centre error after 16 steps
of its own predictions in the contact windows, where repeating the start is 12.5 cm and the best video model
10.2. The world model then moves the cube's pixels there (:func:`vap_env.prompts.warp.move_object`) as it
moves the robot's, and the video model draws the result.

Inputs per transition t -> t + 1, in the world frame (scaled to order 1): the TCP's (x, y) relative to the
object at t, the TCP's (x, y) motion, its height at t and t + 1, the commanded gripper openness at t + 1.
The TCP comes from forward kinematics of the *commanded* joints, as in the imagined world (never the
simulator's achieved state). Output: the object's (x, y) displacement. The object's yaw is left out: with it
(the cube's frame, yaw mod 90 degrees) the same held-out figure was 3.96 cm, without it 3.00.

Written here: a three-layer MLP on hand-made features is a few lines of torch; no chosen package fits one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vap_env.data import Episode

OBJECT_DYNAMICS_DIR = "object_dynamics"
"""Where a world model keeps its object dynamics (``save_pretrained``)."""
CONFIG_NAME = "object_dynamics.json"
WEIGHTS_NAME = "object_dynamics.safetensors"

_POSITION_SCALE = 10.0  # 1 / m: relative positions and heights (tens of cm) to order 1
_MOTION_SCALE = 50.0  # 1 / m: per-step motions (1-2 cm) to order 1, for inputs and the output alike
CONTACT_RADIUS = 0.10
"""m: beyond this horizontal distance from the object at both t and t + 1 the TCP cannot touch it (half the
cube's diagonal, 3.5 cm, the fingers' reach and a step's motion), and the object is not moved: an MLP alone
extrapolates to motion far from any data."""


@dataclasses.dataclass
class ObjectDynamicsConfig:
    """Size and training of :class:`ObjectDynamics`.

    Args:
        hidden: Units per hidden layer.
        layers: Hidden layers.
        steps: Training steps (AdamW, cosine decay).
        batch_size: Transitions per step.
        lr: Peak learning rate.
        moving_weight: Extra loss weight on transitions in which the object moves (at least 2 mm): about one
            in six of the push data's, the ones that matter.
        seed: Seed of the weights and the batches.
    """

    hidden: int = 256
    layers: int = 3
    steps: int = 3000
    batch_size: int = 512
    lr: float = 1e-3
    moving_weight: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.moving_weight < 0:
            raise ValueError(
                f"`lr` must be > 0 and `moving_weight` >= 0, got {self.lr}, {self.moving_weight}"
            )


def features(
    object_xy: np.ndarray, tcp: np.ndarray, next_tcp: np.ndarray, next_gripper: np.ndarray
) -> np.ndarray:
    """``(N, 7)`` float32 inputs from ``(N, 2)`` object positions, ``(N, 3)`` TCPs at t and t + 1 and ``(N,)``
    commanded gripper openness at t + 1 (see the module docstring)."""
    tcp, next_tcp = np.asarray(tcp, np.float64), np.asarray(next_tcp, np.float64)
    relative = (tcp[:, :2] - np.asarray(object_xy, np.float64)) * _POSITION_SCALE
    motion = (next_tcp[:, :2] - tcp[:, :2]) * _MOTION_SCALE
    heights = np.stack([tcp[:, 2], next_tcp[:, 2]], axis=1) * _POSITION_SCALE
    gripper = np.asarray(next_gripper, np.float64).reshape(-1, 1)
    return np.concatenate([relative, motion, heights, gripper], axis=1).astype(np.float32)


def _near(x: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the transitions (:func:`features` rows) whose TCP comes within :data:`CONTACT_RADIUS`."""
    start = np.linalg.norm(x[:, :2], axis=1) / _POSITION_SCALE
    end = np.linalg.norm(x[:, :2] / _POSITION_SCALE + x[:, 2:4] / _MOTION_SCALE, axis=1)
    return np.minimum(start, end) <= CONTACT_RADIUS


class ObjectDynamics(nn.Module):
    """The MLP: :func:`features` in, the object's scaled ``(x, y)`` displacement out (:meth:`step`)."""

    def __init__(self, config: ObjectDynamicsConfig | None = None) -> None:
        super().__init__()
        self.config = config or ObjectDynamicsConfig()
        width, layers = self.config.hidden, []
        for i in range(self.config.layers):
            layers += [nn.Linear(7 if i == 0 else width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def step(
        self, object_xy: np.ndarray, tcp: np.ndarray, next_tcp: np.ndarray, next_gripper: np.ndarray
    ) -> np.ndarray:
        """``(N, 2)`` the objects' next table positions (m), batched (see :func:`features`)."""
        x = features(object_xy, tcp, next_tcp, next_gripper)
        object_xy = np.asarray(object_xy, np.float64)
        near = _near(x)
        moved = np.zeros_like(object_xy)
        if near.any():
            device = next(self.parameters()).device
            out = self(torch.from_numpy(x[near]).to(device)).double().cpu().numpy()
            moved[near] = out / _MOTION_SCALE
        return object_xy + moved

    def save(self, directory: str | Path) -> None:
        """Writes :data:`CONFIG_NAME` and :data:`WEIGHTS_NAME` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, directory / WEIGHTS_NAME)
        (directory / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> ObjectDynamics:
        """The model :meth:`save` wrote to ``directory``, in eval mode."""
        directory = Path(directory)
        config = ObjectDynamicsConfig(**json.loads((directory / CONFIG_NAME).read_text()))
        model = cls(config)
        model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        return model.eval()

    @staticmethod
    def saved_in(directory: str | Path) -> bool:
        return (Path(directory) / WEIGHTS_NAME).is_file()


def transitions(episodes: list[Episode], tcps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``(M, 7)``, scaled targets ``(M, 2)`` and moving flags ``(M,)`` of every transition of
    ``episodes``, given each episode's ``(T, 3)`` TCPs (forward kinematics of its commanded joints)."""
    inputs, targets, moving = [], [], []
    for episode, tcp in zip(episodes, tcps, strict=True):
        xy = np.asarray(episode.object_poses[:, :2], np.float64)
        inputs.append(features(xy[:-1], tcp[:-1], tcp[1:], episode.commanded_gripper[1:]))
        step = xy[1:] - xy[:-1]
        targets.append((step * _MOTION_SCALE).astype(np.float32))
        moving.append(np.linalg.norm(step, axis=1) >= 0.002)
    return np.concatenate(inputs), np.concatenate(targets), np.concatenate(moving)


def commanded_tcps(episode: Episode, robot) -> np.ndarray:  # noqa: ANN001 (a vap_env.kinematics.Robot)
    """``(T, 3)`` the TCP of each commanded state of ``episode`` (forward kinematics)."""
    return np.stack([robot.ee_pose(q)[0] for q in episode.commanded_joints])


def fit_object_dynamics(
    episodes: list[Episode],
    heldout: list[Episode],
    config: ObjectDynamicsConfig | None = None,
    progress: bool = False,
) -> tuple[ObjectDynamics, dict[str, float]]:
    """Trains :class:`ObjectDynamics` on the transitions of ``episodes`` (a task with an object).

    Only the transitions whose TCP comes within :data:`CONTACT_RADIUS` of the object are learned from (the
    others are not moved).

    Returns:
        The model (eval mode, on the CPU) and figures: ``heldout_error_mm``, the mean one-step displacement
        error on ``heldout``'s transitions in which the object moves within reach, beside
        ``heldout_still_mm``, the error of predicting no motion there; ``moving_beyond_reach``, the share of
        the training transitions with object motion that happen beyond reach (left unmoved); and
        ``train_seconds``.

    Raises:
        ValueError: If the object never moves in ``episodes`` (a task without an object, or no contact).
    """
    import time

    from tqdm.auto import tqdm

    from vap_env.kinematics import Robot

    config = config or ObjectDynamicsConfig()
    robot = Robot(episodes[0].robot)
    try:
        x, y, moving = transitions(episodes, [commanded_tcps(e, robot) for e in episodes])
        hx, hy, hmoving = transitions(heldout, [commanded_tcps(e, robot) for e in heldout])
    finally:
        robot.close()
    near = _near(x)
    info = {"moving_beyond_reach": round(float((moving & ~near).sum() / max(moving.sum(), 1)), 4)}
    x, y, moving = (
        x[near],
        y[near],
        moving[near],
    )  # beyond reach the object is not moved (ObjectDynamics.step)
    hnear = _near(hx)
    hx, hy, hmoving = hx[hnear], hy[hnear], hmoving[hnear]
    if not moving.any():
        raise ValueError(
            "the object never moves in these episodes: the object dynamics needs pushes (a task with an "
            "object, recorded with a policy that touches it)"
        )
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = ObjectDynamics(config)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    weight = 1.0 + config.moving_weight * torch.from_numpy(moving).float()
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in tqdm(range(config.steps), desc="object dynamics", disable=not progress):
        batch = torch.randint(0, len(x_t), (config.batch_size,), generator=generator)
        loss = ((model(x_t[batch]) - y_t[batch]) ** 2).sum(-1).mul(weight[batch]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    info["train_seconds"] = round(time.perf_counter() - start, 1)
    if hmoving.any():
        with torch.no_grad():
            predicted = model(torch.from_numpy(hx[hmoving]))
        truth = torch.from_numpy(hy[hmoving])
        info["heldout_error_mm"] = round(
            (predicted - truth).norm(dim=-1).mean().item() / _MOTION_SCALE * 1e3, 2
        )
        info["heldout_still_mm"] = round(truth.norm(dim=-1).mean().item() / _MOTION_SCALE * 1e3, 2)
    return model, info
