import numpy as np
import pybullet as p
import pytest
from pybullet_utils import bullet_client

from vap_env.camera import Camera, ViewpointSampler
from vap_env.description import load_description


def test_pybullet_matrices_round_trip():
    view = p.computeViewMatrixFromYawPitchRoll([0.4, 0.1, 0.2], 1.3, 30.0, -40.0, 0.0, 2)
    proj = p.computeProjectionMatrixFOV(50.0, 96 / 64, 0.02, 4.0)
    cam = Camera.from_pybullet(view, proj, 96, 64)
    v2, p2 = cam.to_pybullet()
    np.testing.assert_allclose(v2, view, atol=1e-6)
    np.testing.assert_allclose(p2, proj, atol=1e-6)
    assert cam.near == pytest.approx(0.02, rel=1e-4) and cam.far == pytest.approx(4.0, rel=1e-4)


def test_look_at_centres_target_and_orbit_matches_pybullet():
    cam = Camera.look_at([1.0, 1.0, 1.0], [0.2, 0.0, 0.1], 64, 48, fov=45)
    uv, z = cam.project(np.array([0.2, 0.0, 0.1]))
    np.testing.assert_allclose(uv, [31.5, 23.5], atol=1e-9)  # the image centre, pixel centres at integers
    assert z == pytest.approx(np.linalg.norm([0.8, 1.0, 0.9]))
    np.testing.assert_allclose(cam.position, [1, 1, 1], atol=1e-12)
    # A point above the target appears above the centre (smaller row index).
    assert cam.project(np.array([0.2, 0.0, 0.3]))[0][1] < 23.5


def _marker_centroid(camera: Camera, point) -> np.ndarray:
    client = bullet_client.BulletClient(connection_mode=p.DIRECT)
    shape = client.createVisualShape(p.GEOM_SPHERE, radius=0.03, rgbaColor=[1, 0, 0, 1])
    client.createMultiBody(baseVisualShapeIndex=shape, basePosition=list(point))
    view, proj = camera.to_pybullet()
    _, _, _, _, seg = client.getCameraImage(
        camera.width, camera.height, view, proj, renderer=p.ER_TINY_RENDERER
    )
    client.disconnect()
    rows, cols = np.nonzero(np.asarray(seg).reshape(camera.height, camera.width) >= 0)
    assert len(rows) > 3
    return np.array([cols.mean(), rows.mean()])


@pytest.mark.parametrize("size", [(64, 64), (128, 96)])
def test_projection_lands_within_one_pixel_of_render(size):
    """A small sphere rendered by PyBullet is centred where Camera.project puts its centre."""
    w, h = size
    cam = Camera.orbit([0.4, 0.0, 0.2], 0.9, 40.0, -35.0, w, h, fov=50)
    for point in ([0.4, 0.0, 0.2], [0.55, 0.12, 0.05], [0.3, -0.15, 0.35]):
        uv, _ = cam.project(np.array(point))
        assert np.linalg.norm(_marker_centroid(cam, point) - uv) < 1.0


def test_unproject_to_plane_inverts_projection():
    cam = Camera.orbit([0.5, 0.0, 0.0], 1.2, 60.0, -45.0, 64, 64)
    pts = np.array([[0.4, 0.1, 0.0], [0.6, -0.2, 0.0]])
    uv, _ = cam.project(pts)
    np.testing.assert_allclose(cam.unproject_to_plane(uv), pts, atol=1e-6)
    # A pixel looking at the sky has no intersection.
    up = Camera.look_at([0, 0, 1], [0, 0, 2], 8, 8, up=(0, 1, 0))
    assert np.isnan(up.unproject_to_plane(np.array([3.5, 3.5]))).all()


def test_resized_keeps_projection_consistent():
    cam = Camera.orbit([0.5, 0.0, 0.1], 1.2, 60.0, -45.0, 64, 64)
    big = cam.resized(256, 256)
    pt = np.array([0.45, 0.1, 0.05])
    np.testing.assert_allclose((big.project(pt)[0] + 0.5), (cam.project(pt)[0] + 0.5) * 4, atol=1e-9)


def test_dict_round_trip():
    cam = Camera.orbit([0.5, 0.0, 0.1], 1.2, 60.0, -45.0, 64, 64)
    back = Camera.from_dict(cam.to_dict())
    np.testing.assert_array_equal(back.intrinsics, cam.intrinsics)
    np.testing.assert_array_equal(back.extrinsics, cam.extrinsics)


def test_viewpoint_sampler_varies_and_looks_at_workspace():
    spec = load_description("panda").camera
    sampler = ViewpointSampler.around(spec)
    rng = np.random.default_rng(0)
    cams = [sampler.sample(rng, 64, 64) for _ in range(10)]
    positions = np.array([c.position for c in cams])
    assert positions.std(axis=0).max() > 0.1
    for c in cams:
        uv, z = c.project(np.array(spec.target))
        assert z > 0 and np.all(np.abs(uv - 31.5) < 8)


def test_bad_camera_arguments():
    with pytest.raises(ValueError, match="intrinsics"):
        Camera(np.eye(2), np.eye(4), 64, 64)
    with pytest.raises(ValueError, match="differ"):
        Camera.look_at([0, 0, 0], [0, 0, 0], 64, 64)
    with pytest.raises(ValueError, match="pitch"):
        ViewpointSampler((0, 0, 0), (1, 2), (0, 10), (-10, 10))
