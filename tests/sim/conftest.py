"""Shared helpers for the simulator tests."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.camera import Camera
from vap_env.sim.scene import TabletopScene


def _marker_errors(
    scene: TabletopScene, camera: Camera, points: np.ndarray, radius: float = 0.02
) -> np.ndarray:
    """(N, 2) rendered-minus-projected pixel offsets (du, dv) of a small sphere placed at each point.

    The robot is moved out of view first (nothing may occlude the markers) and back afterwards; points whose
    marker would touch the image border are skipped (their centroid is clipped).
    """
    robot = scene.body_id("robot")
    pose = scene.client.getBasePositionAndOrientation(robot)
    scene.client.resetBasePositionAndOrientation(robot, [5.0, 5.0, -3.0], pose[1])
    scene.create_sphere("marker", radius=radius, position=(0, 0, 0), rgba=(0, 0, 1, 1), ghost=True)
    errors = []
    try:
        for point in np.asarray(points, dtype=np.float64).reshape(-1, 3):
            uv, depth = camera.project(point)
            r_px = radius * camera.intrinsics[0, 0] / depth
            margin = r_px + 3
            if not (margin < uv[0] < camera.width - margin and margin < uv[1] < camera.height - margin):
                continue
            scene.set_base_pose("marker", point)
            rows, cols = np.nonzero(scene.render(camera).segmentation == scene.body_id("marker"))
            assert len(rows) > 20, "marker too small to locate"
            errors.append((cols.mean() - uv[0], rows.mean() - uv[1]))
    finally:
        scene.remove_body("marker")
        scene.client.resetBasePositionAndOrientation(robot, *pose)
    return np.array(errors).reshape(-1, 2)


@pytest.fixture
def marker_errors():
    """The function ``(scene, camera, points) -> (N, 2) pixel errors`` (see ``_marker_errors``)."""
    return _marker_errors
