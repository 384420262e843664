"""A PyBullet tabletop scene: a table, one robot, a red cube and a goal marker, over one private client.

Bodies are looked up by name (``"table"``, ``"floor"``, ``"robot"``, ``"object"``, ``"goal"``) through small
getters and setters, in the manner of panda-gym's ``PyBullet`` wrapper. Each scene owns its own
:class:`~pybullet_utils.bullet_client.BulletClient` in DIRECT mode, never a global connection, so many
scenes (and the kinematic :class:`~vap_env.kinematics.Robot` models) coexist in one process.

World frame: the table top is the plane ``z = 0``; the robot stands on it at its description's
``base_position``. Colours are chosen for the vision side of vap-env: the cube is the only saturated red
thing in view (robot links of a reddish/orange colour are repainted grey), the goal is green, the table,
floor and background are neutral.
"""

from __future__ import annotations

import colorsys
import contextlib
from dataclasses import dataclass

import numpy as np
import pybullet as p
from pybullet_utils import bullet_client

from vap_env.camera import Camera
from vap_env.description import RobotDescription
from vap_env.kinematics import load_body

CUBE_RGBA = (0.85, 0.05, 0.05, 1.0)
GOAL_RGBA = (0.1, 0.8, 0.2, 1.0)
TABLE_RGBA = (0.62, 0.60, 0.57, 1.0)
FLOOR_RGBA = (0.38, 0.38, 0.38, 1.0)
NEUTRAL_ROBOT_RGBA = (0.55, 0.55, 0.58, 1.0)
TABLE_HEIGHT = 0.4


@dataclass(frozen=True)
class SceneRender:
    """One rendered frame.

    Attributes:
        rgb: (H, W, 3) uint8 image.
        robot_mask: (H, W) bool, pixels showing the robot.
        object_mask: (H, W) bool, pixels showing the cube.
        segmentation: (H, W) int32 body id per pixel (-1 for background).
    """

    rgb: np.ndarray
    robot_mask: np.ndarray
    object_mask: np.ndarray
    segmentation: np.ndarray


class TabletopScene:
    """Table, robot, cube and goal marker in one PyBullet DIRECT client.

    Args:
        description: The robot to load.
        cube_size: Edge length of the cube (m).
        cube_mass: Mass of the cube (kg).
        goal_shape: ``"disc"`` (a flat disc on the table, for pushing) or ``"sphere"`` (for reaching).
        with_object: Whether to build the cube (reaching leaves it out).
        timestep: Physics time step (s).
    """

    def __init__(
        self,
        description: RobotDescription,
        cube_size: float = 0.05,
        cube_mass: float = 0.1,
        goal_shape: str = "disc",
        with_object: bool = True,
        timestep: float = 1.0 / 240.0,
    ) -> None:
        if goal_shape not in ("disc", "sphere"):
            raise ValueError(f"`goal_shape` must be 'disc' or 'sphere', got {goal_shape!r}")
        self.description = description
        self.cube_size = float(cube_size)
        self.timestep = float(timestep)
        self.client = bullet_client.BulletClient(connection_mode=p.DIRECT)
        self.client.setTimeStep(self.timestep)
        self.client.setGravity(0.0, 0.0, -9.81)
        # Otherwise the broadphase pair order, and so the contact order, depends on the history.
        self.client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self._bodies: dict[str, int] = {}
        self._joints: dict[str, dict[str, int]] = {}
        self._specs: dict[str, tuple] = {}
        self._build(goal_shape, cube_mass, with_object)
        self._props = [name for name in self._specs if self._specs[name][1] >= 0]  # colliding, not the robot

    # ----------------------------------------------------------------------------------------- building
    def _build(self, goal_shape: str, cube_mass: float, with_object: bool) -> None:
        x0, x1 = self.description.workspace_x
        # The table reaches behind the robot base and well past the workspace, so every sampled camera sees
        # table or floor, never a hole.
        self.create_box(
            "table",
            half_extents=(0.7, 0.8, TABLE_HEIGHT / 2),
            position=(0.5 * (x0 + x1) - 0.15, 0.0, -TABLE_HEIGHT / 2),
            rgba=TABLE_RGBA,
            mass=0.0,
        )
        self.create_box(
            "floor",
            half_extents=(3.0, 3.0, 0.01),
            position=(0.0, 0.0, -TABLE_HEIGHT - 0.01),
            rgba=FLOOR_RGBA,
            mass=0.0,
        )
        self._bodies["robot"] = load_body(self.client, self.description)
        self._robot_base_pose = self.client.getBasePositionAndOrientation(self._bodies["robot"])
        self._index_joints("robot")
        self._neutralise_red("robot")
        h = self.cube_size / 2
        if with_object:
            self.create_box(
                "object",
                half_extents=(h, h, h),
                position=(0.5 * (x0 + x1), 0.0, h),
                rgba=CUBE_RGBA,
                mass=cube_mass,
                lateral_friction=0.5,
            )
        if goal_shape == "disc":
            self.create_cylinder(
                "goal",
                radius=0.03,
                height=0.002,
                position=(0.5 * (x0 + x1), 0.1, 0.001),
                rgba=GOAL_RGBA,
                ghost=True,
            )
        else:
            self.create_sphere(
                "goal", radius=0.015, position=(0.5 * (x0 + x1), 0.1, 0.1), rgba=GOAL_RGBA, ghost=True
            )

    def _add(
        self, name: str, visual: int, collision: int, mass: float, position, lateral_friction: float | None
    ) -> int:
        if name in self._bodies:
            raise ValueError(f"a body named {name!r} already exists; bodies: {', '.join(self._bodies)}")
        self._specs[name] = (visual, collision, mass, tuple(position), lateral_friction)
        body = self.client.createMultiBody(
            baseMass=mass,
            baseCollisionShapeIndex=collision,
            baseVisualShapeIndex=visual,
            basePosition=list(position),
        )
        if lateral_friction is not None:
            self.client.changeDynamics(body, -1, lateralFriction=lateral_friction)
        self._bodies[name] = body
        return body

    def create_box(
        self,
        name: str,
        half_extents,
        position,
        rgba,
        mass: float = 0.0,
        ghost: bool = False,
        lateral_friction: float | None = None,
    ) -> int:
        """Add a box; ``ghost`` bodies are visual only (no collision). Returns the body id."""
        vis = self.client.createVisualShape(p.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(rgba))
        col = -1 if ghost else self.client.createCollisionShape(p.GEOM_BOX, halfExtents=list(half_extents))
        return self._add(name, vis, col, mass, position, lateral_friction)

    def create_sphere(
        self,
        name: str,
        radius: float,
        position,
        rgba,
        mass: float = 0.0,
        ghost: bool = False,
    ) -> int:
        """Add a sphere; ``ghost`` bodies are visual only. Returns the body id."""
        vis = self.client.createVisualShape(p.GEOM_SPHERE, radius=radius, rgbaColor=list(rgba))
        col = -1 if ghost else self.client.createCollisionShape(p.GEOM_SPHERE, radius=radius)
        return self._add(name, vis, col, mass, position, None)

    def create_cylinder(
        self, name: str, radius: float, height: float, position, rgba, mass: float = 0.0, ghost: bool = False
    ) -> int:
        """Add a z-aligned cylinder; ``ghost`` bodies are visual only. Returns the body id."""
        vis = self.client.createVisualShape(
            p.GEOM_CYLINDER, radius=radius, length=height, rgbaColor=list(rgba)
        )
        col = -1 if ghost else self.client.createCollisionShape(p.GEOM_CYLINDER, radius=radius, height=height)
        return self._add(name, vis, col, mass, position, None)

    def has_body(self, name: str) -> bool:
        return name in self._bodies

    def remove_body(self, name: str) -> None:
        """Remove a body added after construction (a marker, say); the built-in ones stay."""
        if name in ("table", "floor", "robot", "object", "goal"):
            raise ValueError(f"{name!r} is part of the scene and cannot be removed")
        self.client.removeBody(self._bodies.pop(name))
        del self._specs[name]

    def _index_joints(self, name: str) -> None:
        body = self._bodies[name]
        self._joints[name] = {
            self.client.getJointInfo(body, j)[1].decode(): j for j in range(self.client.getNumJoints(body))
        }

    def _neutralise_red(self, name: str) -> None:
        """Repaint saturated red/orange links grey: the cube stays the only red thing for colour detectors."""
        body = self._bodies[name]
        for shape in self.client.getVisualShapeData(body):
            r, g, b, a = shape[7]
            hue, _, sat = colorsys.rgb_to_hls(r, g, b)
            if sat > 0.35 and max(r, g, b) > 0.2 and (hue < 50 / 360 or hue > 320 / 360):
                self.client.changeVisualShape(body, shape[1], rgbaColor=list(NEUTRAL_ROBOT_RGBA[:3]) + [a])

    # ----------------------------------------------------------------------------------------- lookup
    def body_id(self, name: str) -> int:
        """PyBullet id of the body called ``name``."""
        if name not in self._bodies:
            raise ValueError(f"no body named {name!r}; bodies: {', '.join(self._bodies)}")
        return self._bodies[name]

    def joint_ids(self, body: str, joints: tuple[str, ...] | list[str]) -> list[int]:
        """Joint indices of ``body`` for the given joint names."""
        table = self._joints.get(body)
        if table is None:
            self._index_joints(body)
            table = self._joints[body]
        missing = [j for j in joints if j not in table]
        if missing:
            raise ValueError(f"body {body!r} has no joints {missing}; joints: {', '.join(table)}")
        return [table[j] for j in joints]

    def joint_max_forces(self, body: str, joint_ids: list[int], default: float) -> np.ndarray:
        """Effort limits from the model file; ``default`` where the file gives none."""
        forces = [self.client.getJointInfo(self.body_id(body), j)[10] for j in joint_ids]
        return np.array([f if f > 0 else default for f in forces], dtype=np.float64)

    # ----------------------------------------------------------------------------------------- getters
    def get_base_position(self, body: str) -> np.ndarray:
        return np.array(self.client.getBasePositionAndOrientation(self.body_id(body))[0])

    def get_base_orientation(self, body: str) -> np.ndarray:
        """Quaternion xyzw (4,)."""
        return np.array(self.client.getBasePositionAndOrientation(self.body_id(body))[1])

    def get_base_pose(self, body: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and quaternion xyzw (4,), from one PyBullet call."""
        position, orientation = self.client.getBasePositionAndOrientation(self.body_id(body))
        return np.array(position), np.array(orientation)

    def get_base_velocity(self, body: str) -> np.ndarray:
        """Linear velocity (3,)."""
        return np.array(self.client.getBaseVelocity(self.body_id(body))[0])

    def get_joint_angles(self, body: str, joint_ids: list[int]) -> np.ndarray:
        states = self.client.getJointStates(self.body_id(body), joint_ids)
        return np.array([s[0] for s in states], dtype=np.float64)

    def get_link_position(self, body: str, link: int) -> np.ndarray:
        """World position (3,) of a link frame (URDF link origin)."""
        return self.get_link_pose(body, link)[0]

    def get_link_pose(self, body: str, link: int) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and quaternion xyzw (4,) of a link frame (URDF link origin)."""
        state = self.client.getLinkState(self.body_id(body), link, computeForwardKinematics=1)
        return np.array(state[4]), np.array(state[5])

    # ----------------------------------------------------------------------------------------- setters
    def set_base_pose(self, body: str, position, orientation=(0.0, 0.0, 0.0, 1.0)) -> None:
        """Teleport a body (velocities reset to zero)."""
        bid = self.body_id(body)
        self.client.resetBasePositionAndOrientation(bid, list(position), list(orientation))
        self.client.resetBaseVelocity(bid, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    def set_joint_angles(self, body: str, joint_ids: list[int], angles: np.ndarray) -> None:
        """Teleport joints (velocities reset to zero)."""
        bid = self.body_id(body)
        for j, a in zip(joint_ids, angles, strict=True):
            self.client.resetJointState(bid, j, float(a), 0.0)

    def control_joints(
        self, body: str, joint_ids: list[int], targets: np.ndarray, forces: np.ndarray
    ) -> None:
        """Position-control joints towards ``targets`` with at most ``forces`` (N or N m)."""
        self.client.setJointMotorControlArray(
            self.body_id(body),
            joint_ids,
            p.POSITION_CONTROL,
            targetPositions=list(map(float, targets)),
            forces=list(map(float, forces)),
        )

    # ----------------------------------------------------------------------------------------- simulation
    def step(self, substeps: int = 1) -> None:
        step = self.client.stepSimulation  # looked up once: BulletClient builds a partial per lookup
        for _ in range(substeps):
            step()

    def restore(self) -> None:
        """Back to the state right after construction, independent of history (for same-seed replays).

        PyBullet keeps contact caches (warm-start impulses) across ``restoreState`` and teleports, so the
        colliding props (table, floor, cube) are rebuilt: without that the same seed replays differently
        (by ~1e-4 m) after different histories. The robot is put back at its built pose, joints at zero.
        """
        robot = self._bodies["robot"]
        self.client.resetBasePositionAndOrientation(robot, *self._robot_base_pose)
        self.client.resetBaseVelocity(robot, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        for j in range(self.client.getNumJoints(robot)):
            self.client.resetJointState(robot, j, 0.0, 0.0)
        for name in reversed(self._props):
            self.client.removeBody(self._bodies.pop(name))
        for name in self._props:
            visual, collision, mass, position, friction = self._specs.pop(name)
            self._add(name, visual, collision, mass, position, friction)

    def render(self, camera: Camera) -> SceneRender:
        """RGB image and robot/cube masks from one ``getCameraImage`` call (TinyRenderer, CPU)."""
        view, proj = camera.to_pybullet()
        w, h = camera.width, camera.height
        _, _, rgba, _, seg = self.client.getCameraImage(w, h, view, proj, renderer=p.ER_TINY_RENDERER)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()
        seg = np.asarray(seg, dtype=np.int32).reshape(h, w)
        return SceneRender(
            rgb=rgb,
            robot_mask=seg == self._bodies["robot"],
            object_mask=seg == self._bodies.get("object", -2),
            segmentation=seg,
        )

    def close(self) -> None:
        """Disconnect the client; safe to call twice."""
        if getattr(self, "client", None) is not None:
            with contextlib.suppress(p.error):
                self.client.disconnect()
            self.client = None
