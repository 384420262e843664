"""Robot kinematics over PyBullet in DIRECT mode: forward kinematics to skeleton keypoints, inverse kinematics.

Each :class:`Robot` owns its own PyBullet client holding only the robot, never a global connection, so any
number of robots (and simulators) coexist in one process, and FK/IK never disturb a running simulation.
The same private client renders robot-only masks and depth images for the ``mask``/``depth`` prompts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p
from pybullet_utils import bullet_client

from vap_env.camera import Camera
from vap_env.description import RobotDescription, SkeletonGraph, load_description


@dataclass(frozen=True)
class RobotState:
    """What the robot knows about itself: arm joint positions (J,), gripper openness in [0, 1]."""

    joints: np.ndarray
    gripper: float


def load_body(client: bullet_client.BulletClient, desc: RobotDescription, base_position=None) -> int:
    """Load a robot's URDF/SDF into ``client`` with a fixed base; returns the body id."""
    path = desc.model_path()
    pos = list(desc.base_position if base_position is None else base_position)
    if path.endswith(".sdf"):
        body = client.loadSDF(path)[0]
        # resetBasePositionAndOrientation places the base's centre of mass; place its link frame instead.
        local_pos, local_orn = client.getDynamicsInfo(body, -1)[3:5]
        com_pos, com_orn = p.multiplyTransforms(pos, [0, 0, 0, 1], local_pos, local_orn)
        client.resetBasePositionAndOrientation(body, com_pos, com_orn)
        # SDF bodies load with a floating base; pin its centre of mass where it now is.
        client.createConstraint(
            body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0], com_pos, [0, 0, 0, 1], com_orn
        )
    else:
        body = client.loadURDF(path, pos, useFixedBase=True, flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT)
    return body


# PyBullet's IK stops its inner iterations once the link target is this close (m). 1e-8 ran all 200 inner
# iterations every step (0.53 ms); 1e-5 stops after a few from the previous command's solution. The loop in
# ``Robot.ik`` still checks the TCP against its ``tolerance`` (0.1 mm) and iterates again when short of it.
# Over 5000 random ee_delta steps the commanded joints moved by at most 7e-5 rad against 1e-8 (TCP error at
# most 4e-5 m either way), and the controller's step took 0.35 ms less.
_IK_RESIDUAL = 1e-5
# Damping of PyBullet's damped-least-squares IK step, per movable joint. With PyBullet's default the inner
# iterations creep toward a 2 cm target: 0.65 ms a step, ending 9e-6 m short. At 1e-3 they get there in a
# few: 0.17 ms, 4e-8 m short, orientation as exact (1000 random ee_delta steps of the Panda; the commanded
# joints differ by a median 4e-5 rad, at most 2e-3 rad along the arm's redundant direction).
_IK_DAMPING = 1e-3


class Robot:
    """Kinematic model of one robot, in its own PyBullet DIRECT client.

    Args:
        description: A :class:`RobotDescription`, a robot name from ``robots/`` or a path to a ``.toml``.

    Example:
        >>> robot = Robot("panda")
        >>> kp = robot.fk(robot.home)            # (K, 3) keypoints in the world frame
        >>> q = robot.ik([0.5, 0.0, 0.2])        # joint positions that put the TCP there, gripper down
    """

    def __init__(self, description: RobotDescription | str | Path) -> None:
        self.desc = (
            description if isinstance(description, RobotDescription) else load_description(description)
        )
        if self.desc.kind != "arm":
            raise ValueError(
                f"robot {self.desc.name!r} is a {self.desc.kind}, it has no kinematic model; "
                "draw it from tracked keypoints with vap_env.prompts instead"
            )
        self._client = bullet_client.BulletClient(connection_mode=p.DIRECT)
        self.body = load_body(self._client, self.desc)
        c = self._client
        self._joint_index = {
            c.getJointInfo(self.body, j)[1].decode(): j for j in range(c.getNumJoints(self.body))
        }
        self._link_index = {
            c.getJointInfo(self.body, j)[12].decode(): j for j in range(c.getNumJoints(self.body))
        }
        self._link_index[c.getBodyInfo(self.body)[0].decode()] = -1
        self.arm_joint_ids = [self._require(self._joint_index, n, "joint") for n in self.desc.arm_joints]
        grip = self.desc.gripper
        self.gripper_joint_ids = (
            [self._require(self._joint_index, n, "joint") for n in grip.joints] if grip else []
        )
        self.ee_link_id = self._require(self._link_index, self.desc.ee_link, "link")
        self._kp_links = [self._require(self._link_index, k.link, "link") for k in self.desc.keypoints]
        self._kp_offsets = np.array([k.offset for k in self.desc.keypoints], dtype=np.float64)
        self._movable = [
            j
            for j in range(c.getNumJoints(self.body))
            if c.getJointInfo(self.body, j)[2] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC)
        ]
        info = [c.getJointInfo(self.body, j) for j in self.arm_joint_ids]
        lo, hi = np.array([i[8] for i in info]), np.array([i[9] for i in info])
        unlimited = lo >= hi  # continuous joints report lower >= upper
        self.joint_lower = np.where(unlimited, -2 * np.pi, lo)
        self.joint_upper = np.where(unlimited, 2 * np.pi, hi)
        self.home = np.asarray(self.desc.home, dtype=np.float64)
        self._ee_offset = np.asarray(self.desc.ee_offset, dtype=np.float64)
        self.ee_down_orientation = np.array(p.getQuaternionFromEuler(self.desc.ee_down_euler))
        # looked up once: the controller poses the model and solves IK every simulator and imagined step
        self._state_joint_ids = [*self.arm_joint_ids, *self.gripper_joint_ids]
        self._arm_cols = [self._movable.index(j) for j in self.arm_joint_ids]
        self._ik_damping = [_IK_DAMPING] * len(self._movable)
        self._q_cache: tuple[bytes, float] | None = None  # the state the private client holds
        self._ee_cache: tuple[tuple[bytes, float], np.ndarray, np.ndarray] | None = None  # ee_pose there

    def _require(self, table: dict[str, int], name: str, what: str) -> int:
        if name not in table:
            raise ValueError(
                f"robot {self.desc.name!r}: {what} {name!r} not in {self.desc.model}; "
                f"{what}s there: {', '.join(sorted(table))}"
            )
        return table[name]

    # ----------------------------------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        return self.desc.name

    @property
    def num_joints(self) -> int:
        """Number of arm joints (the gripper is one extra scalar, its openness)."""
        return len(self.arm_joint_ids)

    @property
    def graph(self) -> SkeletonGraph:
        return self.desc.graph

    @property
    def client(self) -> bullet_client.BulletClient:
        return self._client

    # ----------------------------------------------------------------------------------------- kinematics
    def _set_state(self, q: np.ndarray, gripper: float) -> None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.arm_joint_ids),):
            raise ValueError(
                f"robot {self.name!r}: expected {self.num_joints} joint positions, got shape {q.shape}"
            )
        key = (q.tobytes(), float(gripper))
        if key == self._q_cache:
            return  # already there (and checked when it was set)
        if not np.isfinite(q).all():
            raise ValueError(f"robot {self.name!r}: joint positions must be finite, got {q}")
        vals = q.tolist()
        if self.desc.gripper is not None:
            vals += self.desc.gripper.joint_positions(gripper).tolist()
        self._client.resetJointStatesMultiDof(self.body, self._state_joint_ids, [[v] for v in vals])
        self._q_cache = key

    def pose(self, q: np.ndarray, gripper: float = 1.0) -> None:
        """Put the robot of the private client in state ``(q, gripper)`` (for renders through ``self.client``)."""
        self._set_state(q, gripper)

    def link_frames(
        self, q: np.ndarray, gripper: float = 1.0, links: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """World poses of link frames (URDF link origins): positions (L, 3) and quaternions xyzw (L, 4)."""
        self._set_state(q, gripper)
        links = list(range(self._client.getNumJoints(self.body))) if links is None else links
        pos, orn = np.zeros((len(links), 3)), np.zeros((len(links), 4))
        linked = [lk for lk in links if lk >= 0]
        states = (
            dict(
                zip(
                    linked,
                    self._client.getLinkStates(self.body, linked, computeForwardKinematics=1),
                    strict=True,
                )
            )
            if linked
            else {}
        )
        base = self._base_link_frame() if -1 in links else None
        for i, lk in enumerate(links):
            s = states[lk][4:6] if lk >= 0 else base
            pos[i], orn[i] = s[0], s[1]
        return pos, orn

    def fk(self, q: np.ndarray, gripper: float = 1.0) -> np.ndarray:
        """Skeleton keypoints in the world frame.

        Args:
            q: (J,) arm joint positions (rad).
            gripper: Openness in [0, 1]; moves the finger keypoints.

        Returns:
            (K, 3) keypoint positions (m), in the order of ``self.graph.keypoint_names``.
        """
        pos, orn = self.link_frames(q, gripper, self._kp_links)
        R = np.array([p.getMatrixFromQuaternion(o) for o in orn]).reshape(-1, 3, 3)
        return pos + np.einsum("kij,kj->ki", R, self._kp_offsets)

    def _base_link_frame(self) -> tuple:
        # getBasePositionAndOrientation gives the base's centre of mass; the URDF link frame is offset from it.
        com_pos, com_orn = self._client.getBasePositionAndOrientation(self.body)
        local_pos, local_orn = self._client.getDynamicsInfo(self.body, -1)[3:5]
        inv_pos, inv_orn = p.invertTransform(local_pos, local_orn)
        return p.multiplyTransforms(com_pos, com_orn, inv_pos, inv_orn)

    def ee_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (tool centre point) position (3,) and quaternion xyzw (4,)."""
        self._set_state(q, self._q_cache[1] if self._q_cache else 1.0)
        # Remembered for the state the client holds: IK's last check and its caller ask for the same pose.
        if self._ee_cache is None or self._ee_cache[0] != self._q_cache:
            pos, orn = self.link_frames(q, self._q_cache[1], [self.ee_link_id])
            self._ee_cache = (self._q_cache, self.tcp_position(pos[0], orn[0]), orn[0])
        return self._ee_cache[1].copy(), self._ee_cache[2].copy()

    def tcp_position(self, link_position: np.ndarray, link_orientation: np.ndarray) -> np.ndarray:
        """The TCP (3,) given the world pose of the end-effector link's frame (position, quaternion xyzw).

        For a pose read elsewhere, e.g. from a simulator's copy of this robot (``SimEnv`` reads its arm's
        link there instead of posing this model a second time each step).
        """
        R = np.array(p.getMatrixFromQuaternion(link_orientation)).reshape(3, 3)
        return np.asarray(link_position, dtype=np.float64) + R @ self._ee_offset

    def ik(
        self,
        position: np.ndarray | list[float],
        orientation: np.ndarray | None = None,
        q_init: np.ndarray | None = None,
        iterations: int = 20,
        tolerance: float = 1e-4,
    ) -> np.ndarray:
        """Joint positions (J,) within the joint limits that put the TCP at ``position``.

        PyBullet's damped-least-squares IK is a single linearised step; it is iterated here from the
        current solution until the TCP is within ``tolerance`` metres (or ``iterations`` run out).

        Args:
            position: (3,) target TCP position in the world frame.
            orientation: (4,) target quaternion xyzw; defaults to the gripper pointing down.
            q_init: (J,) starting joint positions; defaults to the home pose.
        """
        target = np.asarray(position, dtype=np.float64)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"`position` must be 3 finite numbers, got {position}")
        orn = self.ee_down_orientation if orientation is None else np.asarray(orientation, dtype=np.float64)
        q0 = (
            self.home.copy()
            if q_init is None
            else np.clip(np.asarray(q_init, dtype=np.float64), self.joint_lower, self.joint_upper)
        )
        gripper = self._q_cache[1] if self._q_cache else 1.0
        # PyBullet solves for the link origin; the TCP sits at `ee_offset` in that link's frame.
        link_target = target - np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3) @ self._ee_offset
        best_q, best_err = q0, np.inf
        # Plain damped least squares first: it converges to 1e-7 m where the solution is inside the limits.
        # If clipping to the limits spoils it, retry with PyBullet's null-space variant, which respects them.
        for null_space in (False, True):
            q = q0.copy()
            for _ in range(iterations):
                self._set_state(q, gripper)
                kwargs: dict = {"jointDamping": self._ik_damping}
                if null_space:
                    lo, hi, rest = self._movable_limits(q)
                    kwargs.update(
                        lowerLimits=lo,
                        upperLimits=hi,
                        restPoses=rest,
                        jointRanges=[h - lw for lw, h in zip(lo, hi, strict=True)],
                    )
                sol = self._client.calculateInverseKinematics(
                    self.body,
                    self.ee_link_id,
                    link_target.tolist(),
                    orn.tolist(),
                    maxNumIterations=200,
                    residualThreshold=_IK_RESIDUAL,
                    **kwargs,
                )
                q = np.clip(np.asarray(sol)[self._arm_cols], self.joint_lower, self.joint_upper)
                err = float(np.linalg.norm(self.ee_pose(q)[0] - target))
                if err < best_err:
                    best_q, best_err = q, err
                if err < tolerance:
                    return q
        return best_q

    def _movable_limits(self, q: np.ndarray) -> tuple[list[float], list[float], list[float]]:
        lo, hi, rest = [], [], []
        for j in self._movable:
            if j in self.arm_joint_ids:
                k = self.arm_joint_ids.index(j)
                lo.append(float(self.joint_lower[k]))
                hi.append(float(self.joint_upper[k]))
                rest.append(float(self.home[k]))
            else:
                info = self._client.getJointInfo(self.body, j)
                lo.append(float(info[8]))
                hi.append(float(max(info[9], info[8] + 1e-3)))
                rest.append(float(self._client.getJointState(self.body, j)[0]))
        return lo, hi, rest

    # ----------------------------------------------------------------------------------------- rendering
    def render_mask_depth(
        self, q: np.ndarray, gripper: float, camera: Camera
    ) -> tuple[np.ndarray, np.ndarray]:
        """Robot-only render: a (H, W) bool mask and (H, W) float32 metric depth (inf where empty)."""
        self._set_state(q, gripper)
        view, proj = camera.to_pybullet()
        _, _, _, depth, seg = self._client.getCameraImage(
            camera.width,
            camera.height,
            view,
            proj,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK * 0,
        )
        seg = np.asarray(seg).reshape(camera.height, camera.width)
        mask = seg >= 0
        metric = camera.linear_depth(np.asarray(depth).reshape(camera.height, camera.width)).astype(
            np.float32
        )
        metric[~mask] = np.inf
        return mask, metric

    def close(self) -> None:
        """Disconnect the private PyBullet client; safe to call twice."""
        if getattr(self, "_client", None) is not None:
            with contextlib.suppress(p.error):
                self._client.disconnect()
            self._client = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()
