"""TabletopScene: bodies by name, rendering and masks, colours, projection against the renderer, resets."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.camera import Camera, ViewpointSampler
from vap_env.description import load_description
from vap_env.sim.registration import arm_robots
from vap_env.sim.scene import TabletopScene


@pytest.fixture(scope="module")
def panda_scene():
    scene = TabletopScene(load_description("panda"))
    yield scene
    scene.close()


def _is_red(rgb: np.ndarray) -> np.ndarray:
    """A simple colour detector of the kind the imagination side uses: strongly red, little green or blue."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return (r > 80) & (r > 3 * g) & (r > 3 * b)


def test_bodies_by_name(panda_scene):
    for name in ("table", "floor", "robot", "object", "goal"):
        assert isinstance(panda_scene.body_id(name), int)
    with pytest.raises(ValueError, match="table, floor, robot"):
        panda_scene.body_id("mug")
    with pytest.raises(ValueError, match="panda_joint1"):
        panda_scene.joint_ids("robot", ["elbow"])
    with pytest.raises(ValueError, match="part of the scene"):
        panda_scene.remove_body("object")


def test_base_pose_is_position_and_orientation(panda_scene):
    quat = (0.0, 0.0, np.sin(0.2), np.cos(0.2))
    panda_scene.set_base_pose("object", (0.45, -0.05, 0.025), quat)
    position, orientation = panda_scene.get_base_pose("object")
    np.testing.assert_array_equal(position, panda_scene.get_base_position("object"))
    np.testing.assert_array_equal(orientation, panda_scene.get_base_orientation("object"))
    np.testing.assert_allclose(position, (0.45, -0.05, 0.025), atol=1e-9)
    np.testing.assert_allclose(orientation, quat, atol=1e-9)
    with pytest.raises(ValueError, match="no body named 'mug'"):
        panda_scene.get_base_pose("mug")


def test_table_top_is_z0_and_cube_rests_on_it(panda_scene):
    panda_scene.restore()
    panda_scene.set_base_pose("object", (0.5, 0.1, 0.025))
    panda_scene.step(240)
    pos = panda_scene.get_base_position("object")
    assert abs(pos[2] - 0.025) < 1e-3  # 5 cm cube resting on z = 0
    np.testing.assert_allclose(pos[:2], (0.5, 0.1), atol=1e-3)


def test_render_shapes_masks_and_colours(panda_scene):
    panda_scene.restore()
    panda_scene.set_base_pose("object", (0.5, 0.0, 0.025))
    camera = Camera.from_spec(panda_scene.description.camera, 96, 80)
    frame = panda_scene.render(camera)
    assert frame.rgb.shape == (80, 96, 3) and frame.rgb.dtype == np.uint8
    assert frame.robot_mask.shape == frame.object_mask.shape == (80, 96)
    assert frame.robot_mask.dtype == np.bool_ and frame.object_mask.dtype == np.bool_
    assert 10 < frame.object_mask.sum() < 200
    assert frame.robot_mask.sum() > 200
    assert not np.any(frame.robot_mask & frame.object_mask)
    cube = frame.rgb[frame.object_mask].astype(np.int32)
    assert cube[:, 0].mean() > 120 and cube[:, 1].mean() < 30 and cube[:, 2].mean() < 30


@pytest.mark.parametrize("robot", arm_robots())
def test_cube_is_the_only_red_thing(robot):
    """Every arm (Kuka's orange links included) leaves the red cube unique for a colour detector."""
    scene = TabletopScene(load_description(robot))
    try:
        rng = np.random.default_rng(0)
        sampler = ViewpointSampler.around(scene.description.camera)
        for _ in range(3):
            frame = scene.render(sampler.sample(rng, 96, 96))
            red = _is_red(frame.rgb)
            assert red[frame.object_mask].mean() > 0.9
            assert red[~frame.object_mask].sum() == 0
    finally:
        scene.close()


def _marker_points(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform((0.3, -0.25, 0.05), (0.7, 0.25, 0.5), size=(6, 3))


def test_marker_centroids_match_camera_projection(panda_scene, marker_errors):
    """World points projected through `Camera` land where the TinyRenderer draws them: well within 1 px, and
    without a systematic offset (a half-pixel convention error, say, shows up as a mean offset of 0.5 px)."""
    panda_scene.restore()
    rng = np.random.default_rng(1)
    sampler = ViewpointSampler.around(panda_scene.description.camera)
    errors = np.concatenate(
        [marker_errors(panda_scene, sampler.sample(rng, 256, 192), _marker_points(rng)) for _ in range(3)]
    )
    assert len(errors) >= 12
    assert np.hypot(*errors.T).max() < 0.5, errors  # measured: 0.17
    assert np.hypot(*errors.mean(axis=0)) < 0.1, errors.mean(axis=0)  # measured: 0.02


def test_restore_rebuilds_props_and_keeps_ids(panda_scene):
    ids = {n: panda_scene.body_id(n) for n in ("table", "floor", "robot", "object", "goal")}
    panda_scene.set_base_pose("object", (0.4, 0.2, 0.3))
    panda_scene.restore()
    assert {n: panda_scene.body_id(n) for n in ids} == ids
    assert panda_scene.get_base_position("object")[2] == pytest.approx(0.025)


def test_close_twice():
    scene = TabletopScene(load_description("panda"), goal_shape="sphere", with_object=False)
    assert not scene.has_body("object")
    assert scene.render(Camera.from_spec(scene.description.camera, 32, 32)).object_mask.sum() == 0
    scene.close()
    scene.close()
    with pytest.raises(ValueError, match="disc"):
        TabletopScene(load_description("panda"), goal_shape="cone")
