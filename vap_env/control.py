"""From actions to commanded robot states: the one place that does it, for the simulator and the world model.

An action never moves the robot directly: it moves the *commanded* state (arm joint targets, gripper
openness, TCP target), which the simulator's position controllers track and from which the visual action
prompt is drawn. :class:`ActionController` holds that commanded state and applies actions to it:

- ``ee_delta`` (default): ``(dx, dy, dz, gripper)``; the TCP target moves by ``max_ee_step`` times
  ``(dx, dy, dz)``, clipped to the workspace box (:func:`workspace_box`); inverse kinematics from the
  previous command, gripper pointing down, gives the commanded joints.
- ``joint_delta``: ``(dq_1, ..., dq_J, gripper)``; every joint target moves by ``max_joint_step`` times its
  entry, within the joint limits; the TCP target follows by forward kinematics.

In both modes the last entry sets the commanded gripper openness ``(a + 1) / 2`` (0 closed, 1 open).
Actions are validated (:func:`check_action`): a wrong shape or a non-finite entry raises ``ValueError``;
entries outside ``[-1, 1]`` are clipped to it (Gymnasium leaves clipping to the environment).

Everything here is kinematic (PyBullet FK/IK in the robot's private client), deterministic, and independent
of what ran before: the same command and action give the same next command in every env.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from vap_env.kinematics import Robot
from vap_env.modes import ACTION_MODES

WORKSPACE_MARGIN = 0.12  # m; the push expert's approach point lies up to ~8 cm outside the object workspace
TCP_CLEARANCE = 0.006  # m; the lowest commanded TCP keeps the finger tips this far above the table
WORKSPACE_TOP = 0.4  # m; highest commanded TCP
_REACH_TOLERANCE = 1e-3  # m; an IK solution further than this from the target means the target is unreachable


@dataclass(frozen=True)
class RobotCommand:
    """A commanded robot state.

    Attributes:
        joints: (J,) float64 arm joint targets (rad).
        gripper: Gripper openness in [0, 1].
        ee_position: (3,) float64 TCP target (m, world frame); equals the FK of ``joints`` up to 1 mm.
    """

    joints: np.ndarray
    gripper: float
    ee_position: np.ndarray


def gripper_command(value: float) -> float:
    """Gripper action entry in [-1, 1] -> commanded openness in [0, 1] (0 closed, 1 open)."""
    return float((value + 1.0) / 2.0)


def action_space(action_mode: str, num_joints: int) -> spaces.Box:
    """``Box(-1, 1, (4,))`` for ``ee_delta``, ``Box(-1, 1, (num_joints + 1,))`` for ``joint_delta``."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"`action_mode` must be one of {', '.join(ACTION_MODES)}; got {action_mode!r}")
    n = 4 if action_mode == "ee_delta" else num_joints + 1
    return spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)


def check_action(action: np.ndarray, shape: tuple[int, ...], action_mode: str = "") -> np.ndarray:
    """Validates an action and clips it to [-1, 1].

    Args:
        action: The action, any array-like.
        shape: The expected shape, e.g. ``(4,)``.
        action_mode: Named in the error message.

    Returns:
        The action as float64, clipped to [-1, 1].

    Raises:
        ValueError: If the shape differs from ``shape`` (the message names the expected shape) or an entry is
            NaN or infinite.
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != tuple(shape):
        mode = f" ({action_mode})" if action_mode else ""
        raise ValueError(f"action must have shape {tuple(shape)}{mode}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a}")
    return np.clip(a, -1.0, 1.0)


def workspace_box(robot: Robot) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) box of the commanded TCP.

    The description's object workspace (``workspace_x`` x ``workspace_y``) plus ``WORKSPACE_MARGIN``, from a
    floor that keeps the lowest link around the TCP ``TCP_CLEARANCE`` above the table (gripper pointing down,
    closed, over the workspace centre) up to ``WORKSPACE_TOP``; widened to contain the home pose's TCP.
    """
    d = robot.desc
    centre = [0.5 * sum(d.workspace_x), 0.5 * sum(d.workspace_y), 0.2]
    q = robot.ik(centre)
    robot.fk(q, 0.0)  # closed fingers reach lowest on some grippers
    c, body = robot.client, robot.body
    tcp = robot.ee_pose(q)[0]
    # The lowest point of the links around the TCP (gripper, wrist) when the gripper points down.
    boxes = [np.array(c.getAABB(body, link)) for link in range(-1, c.getNumJoints(body))]
    near = [b for b in boxes if np.all(b[0, :2] < tcp[:2] + 0.1) and np.all(b[1, :2] > tcp[:2] - 0.1)]
    z_min = tcp[2] - min(b[0, 2] for b in near) + TCP_CLEARANCE
    home_tcp = robot.ee_pose(robot.home)[0]
    low = np.array([d.workspace_x[0] - WORKSPACE_MARGIN, d.workspace_y[0] - WORKSPACE_MARGIN, z_min])
    high = np.array([d.workspace_x[1] + WORKSPACE_MARGIN, d.workspace_y[1] + WORKSPACE_MARGIN, WORKSPACE_TOP])
    return np.minimum(low, home_tcp), np.maximum(high, home_tcp)


class ActionController:
    """Holds a commanded robot state and applies actions to it (see the module docstring).

    Args:
        robot: The kinematic model (FK/IK). Several controllers may share one: each poses the model itself
            before solving, so the result never depends on another controller's calls.
        action_mode: ``"ee_delta"`` or ``"joint_delta"``.
        max_ee_step: TCP step (m) of a full ``ee_delta`` action.
        max_joint_step: Joint step (rad) of a full ``joint_delta`` action.
        workspace: (low, high) box of the TCP target; :func:`workspace_box` of ``robot`` when ``None``.

    Example:
        >>> controller = ActionController(Robot("panda"))
        >>> start = controller.reset(controller.robot.home, 1.0)
        >>> command = controller.step(np.array([1.0, 0.0, 0.0, -1.0]))  # 2 cm along x, gripper closed
    """

    def __init__(
        self,
        robot: Robot,
        action_mode: str = "ee_delta",
        max_ee_step: float = 0.02,
        max_joint_step: float = 0.05,
        workspace: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if max_ee_step <= 0 or max_joint_step <= 0:
            raise ValueError(
                f"`max_ee_step` and `max_joint_step` must be positive, got {max_ee_step} and {max_joint_step}"
            )
        self.robot = robot
        self.action_mode = action_mode
        self.action_space = action_space(action_mode, robot.num_joints)
        self.max_ee_step, self.max_joint_step = float(max_ee_step), float(max_joint_step)
        box = workspace_box(robot) if workspace is None else workspace
        self.workspace = (np.asarray(box[0], dtype=np.float64), np.asarray(box[1], dtype=np.float64))
        self._command = self._at(robot.home, 1.0)

    @property
    def command(self) -> RobotCommand:
        """The current commanded state."""
        return self._command

    def reset(self, joints: np.ndarray, gripper: float) -> RobotCommand:
        """Sets the commanded state to ``(joints (J,), gripper)``; the TCP target is their FK."""
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != (self.robot.num_joints,) or not np.all(np.isfinite(joints)):
            raise ValueError(f"`joints` must be {self.robot.num_joints} finite joint positions, got {joints}")
        if not 0.0 <= gripper <= 1.0:
            raise ValueError(f"`gripper` must be an openness in [0, 1], got {gripper}")
        self._command = self._at(joints, gripper)
        return self._command

    def step(self, action: np.ndarray) -> RobotCommand:
        """Applies one action (validated and clipped by :func:`check_action`); returns the new command."""
        a = check_action(action, self.action_space.shape, self.action_mode)
        prev = self._command
        # IK and FK read the model's pose: pose it at the previous command, so nothing else affects the result
        self.robot.pose(prev.joints, prev.gripper)
        if self.action_mode == "ee_delta":
            target = np.clip(prev.ee_position + a[:3] * self.max_ee_step, *self.workspace)
            q = self.robot.ik(target, q_init=prev.joints)
            reached = self.robot.ee_pose(q)[0]
            # an unreachable target is replaced by what IK reached, so the command never winds up beyond reach
            if np.linalg.norm(reached - target) >= _REACH_TOLERANCE:
                target = reached
        else:
            q = np.clip(
                prev.joints + a[:-1] * self.max_joint_step, self.robot.joint_lower, self.robot.joint_upper
            )
            target = self.robot.ee_pose(q)[0]
        self._command = RobotCommand(q, gripper_command(a[-1]), target)
        return self._command

    def interpolate(self, start: RobotCommand, end: RobotCommand, num: int) -> list[RobotCommand]:
        """``num`` commands along the joint-space line from ``start`` (excluded) to ``end`` (the last one).

        For world models that draw several frames per env step: frame ``i`` of ``num`` shows the arm at
        ``start + (i + 1) / num * (end - start)`` in joint space, TCP by FK, gripper interpolated linearly.
        """
        if num < 1:
            raise ValueError(f"`num` must be >= 1, got {num}")
        out = []
        for i in range(1, num):
            s = i / num
            q = start.joints + s * (end.joints - start.joints)
            g = start.gripper + s * (end.gripper - start.gripper)
            self.robot.pose(q, g)
            out.append(RobotCommand(q, float(g), self.robot.ee_pose(q)[0]))
        return [*out, end]

    def _at(self, joints: np.ndarray, gripper: float) -> RobotCommand:
        q = np.asarray(joints, dtype=np.float64).copy()
        self.robot.pose(q, gripper)
        return RobotCommand(q, float(gripper), self.robot.ee_pose(q)[0])
