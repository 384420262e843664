"""Shared fixtures for the prompt tests: robots, reachable states, and an independent "observed" world.

The observed world is a separate PyBullet DIRECT client (robot + ground plane) rendered through
``getCameraImage``; prompts are drawn through vap-env's own camera and kinematics code. Comparing the two is
what makes the alignment tests meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import cv2
import numpy as np
import pybullet as p
import pybullet_data
import pytest
from pybullet_utils import bullet_client

from vap_env.camera import Camera
from vap_env.kinematics import Robot, load_body

ARMS = ("panda", "kuka_iiwa", "xarm6")


class ObservedWorld:
    """The robot (optionally on a ground plane) in its own client: the stand-in for real camera frames."""

    def __init__(self, robot: Robot, plane: bool = True) -> None:
        self.robot = robot
        self.client = bullet_client.BulletClient(connection_mode=p.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        if plane:
            self.client.loadURDF("plane.urdf")
        self.body = load_body(self.client, robot.desc)
        c = self.client
        self._joints = {c.getJointInfo(self.body, j)[1].decode(): j for j in range(c.getNumJoints(self.body))}

    def set_state(self, q: np.ndarray, gripper: float) -> None:
        names, values = list(self.robot.desc.arm_joints), list(q)
        if self.robot.desc.gripper is not None:
            names += list(self.robot.desc.gripper.joints)
            values += list(self.robot.desc.gripper.joint_positions(gripper))
        for n, v in zip(names, values, strict=True):
            self.client.resetJointState(self.body, self._joints[n], float(v))

    def render(self, q: np.ndarray, gripper: float, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 frame and the robot's (H, W) bool segmentation, from ``camera``."""
        self.set_state(q, gripper)
        view, proj = camera.to_pybullet()
        _, _, rgb, _, seg = self.client.getCameraImage(
            camera.width, camera.height, view, proj, renderer=p.ER_TINY_RENDERER
        )
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(camera.height, camera.width, 4)[..., :3]
        return np.ascontiguousarray(rgb), np.asarray(seg).reshape(camera.height, camera.width) == self.body

    def close(self) -> None:
        self.client.disconnect()


def on_mask_fraction(prompt: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of drawn prompt pixels that fall on the robot's mask dilated by one pixel (3x3)."""
    drawn = prompt.max(axis=-1) > 0
    near = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return float((drawn & near).sum() / max(drawn.sum(), 1))


def random_state(robot: Robot, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A reachable state: IK to a random TCP target in the robot's workspace, random gripper openness."""
    d = robot.desc
    target = [rng.uniform(*d.workspace_x), rng.uniform(*d.workspace_y), rng.uniform(0.03, 0.3)]
    return robot.ik(target), float(rng.uniform())


def perturb_camera(camera: Camera, rng: np.random.Generator, degrees: float, metres: float) -> Camera:
    """The camera rotated by ``degrees`` about a random axis through its centre and moved by ``metres``."""
    axis = rng.normal(size=3)
    R, _ = cv2.Rodrigues(axis / np.linalg.norm(axis) * np.deg2rad(degrees))
    direction = rng.normal(size=3)
    T = camera.extrinsics.copy()
    T[:3, :3] = R @ T[:3, :3]
    T[:3, 3] = R @ T[:3, 3] - T[:3, :3] @ (direction / np.linalg.norm(direction) * metres)
    return Camera(camera.intrinsics, T, camera.width, camera.height, camera.near, camera.far)


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """The helpers above, for test modules (fixtures keep them importable under any pytest import mode)."""
    return SimpleNamespace(
        on_mask_fraction=on_mask_fraction, random_state=random_state, perturb_camera=perturb_camera
    )


@pytest.fixture(scope="session")
def robots() -> Iterator[dict[str, Robot]]:
    loaded = {name: Robot(name) for name in ARMS}
    yield loaded
    for r in loaded.values():
        r.close()


@pytest.fixture(scope="session")
def observed_world(robots: dict[str, Robot]) -> Iterator[Callable[..., ObservedWorld]]:
    """``observed_world(name, plane=True)``: the robot's observed world (created once per robot and plane)."""
    worlds: dict[tuple[str, bool], ObservedWorld] = {}

    def get(name: str, plane: bool = True) -> ObservedWorld:
        if (name, plane) not in worlds:
            worlds[name, plane] = ObservedWorld(robots[name], plane)
        return worlds[name, plane]

    yield get
    for w in worlds.values():
        w.close()
