"""Hand prompts: the 21-keypoint hand description, rendering from 2D and 3D keypoints, smoothing of tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vap_env.camera import Camera
from vap_env.description import load_description
from vap_env.kinematics import Robot
from vap_env.prompts import HandPrompter, OneEuroFilter

MEDIAPIPE_ORDER = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
PALM = {"wrist", "index_mcp", "middle_mcp", "ring_mcp", "pinky_mcp"}


@pytest.fixture(scope="module")
def hand():
    desc = load_description("human_hand")
    return desc, Camera.from_spec(desc.camera, 128, 128)


def _finger_bones(desc, finger: str) -> list:
    """The finger's own bones (the thumb's include wrist -> thumb_cmc), not the palm's."""
    names = desc.graph.keypoint_names
    return [
        b
        for b in desc.graph.bones
        if names[b.end].startswith(finger) and not {names[b.start], names[b.end]} <= PALM
    ]


def test_description_is_a_21_keypoint_mediapipe_hand(hand):
    desc, _ = hand
    assert desc.kind == "hand" and desc.model is None
    assert desc.graph.keypoint_names == MEDIAPIPE_ORDER
    assert all(k.link is None for k in desc.keypoints)
    assert len(desc.graph.bones) == 21  # MediaPipe's HAND_CONNECTIONS
    # One hue family per finger: hues within a finger are closer than to any other finger's.
    colors = {f: np.array([[b.color for b in _finger_bones(desc, f)]], np.uint8) for f in FINGERS}
    hues = {
        f: cv2.cvtColor(c, cv2.COLOR_RGB2HSV_FULL)[0, :, 0].astype(float) * 360 / 256
        for f, c in colors.items()
    }
    for f in FINGERS:
        assert len(hues[f]) == (4 if f == "thumb" else 3)
        spread = np.ptp(hues[f])
        for other in FINGERS:
            if other != f:
                gap = np.abs((hues[f][:, None] - hues[other][None, :] + 180) % 360 - 180).min()
                assert gap > spread + 10, (f, other, gap, spread)
    with pytest.raises(ValueError, match="hand"):
        Robot(desc)


def test_render_from_2d_and_3d_keypoints(hand):
    desc, cam = hand
    world = HandPrompter(cam)
    pose = world.rest_pose()
    img3d = world.render(pose)
    assert img3d.shape == (128, 128, 3) and img3d.dtype == np.uint8
    # The same hand given as pixels, and as points in the camera frame, draws the same skeleton.
    uv, _ = cam.project(pose)
    img2d = HandPrompter(size=(128, 128)).render(uv)
    drawn3d, drawn2d = img3d.max(-1) > 0, img2d.max(-1) > 0
    assert (drawn3d & drawn2d).sum() / (drawn3d | drawn2d).sum() >= 0.98
    in_camera = pose @ cam.extrinsics[:3, :3].T + cam.extrinsics[:3, 3]
    np.testing.assert_array_equal(HandPrompter(cam, points_frame="camera").render(in_camera), img3d)
    # The hand fills a sensible part of the default view.
    rows, cols = np.nonzero(drawn3d)
    assert 0.3 * 128 <= np.ptp(rows) <= 0.95 * 128 and 0.2 * 128 <= np.ptp(cols) <= 0.95 * 128
    # A smaller prompt from the same camera keeps the picture (resized intrinsics).
    small = HandPrompter(cam, size=(64, 64)).render(pose)
    assert small.shape == (64, 64, 3)
    assert (
        np.abs(
            cv2.resize((drawn3d * 255).astype(np.uint8), (64, 64), interpolation=cv2.INTER_AREA).astype(float)
            - (small.max(-1) > 0) * 255
        ).mean()
        < 40
    )


def test_every_finger_colour_appears(hand):
    desc, cam = hand
    hp = HandPrompter(cam, size=(256, 256))  # at 128 px the joint dots cover most of a 7 px fingertip bone
    img = hp.render(hp.rest_pose())
    for finger in FINGERS:
        for bone in _finger_bones(desc, finger):
            exact = np.all(img == np.array(bone.color, np.uint8), axis=-1).sum()
            assert exact >= 3, (finger, bone.color, exact)
    palm = np.all(img == np.array([170, 170, 170], np.uint8), axis=-1).sum()
    assert palm >= 10


def test_lost_keypoints_drop_their_bones(hand):
    desc, cam = hand
    hp = HandPrompter(cam)
    pose = hp.rest_pose()
    pose[8] = np.nan  # index tip lost by the tracker
    img = hp.render(pose)
    tip_bone = next(b for b in desc.graph.bones if b.end == 8)
    assert not np.all(img == np.array(tip_bone.color, np.uint8), axis=-1).any()
    assert np.all(img == np.array(_finger_bones(desc, "index")[0].color, np.uint8), axis=-1).sum() >= 3


def _moving_hand_track(hp: HandPrompter, cam: Camera, rng: np.random.Generator, frames: int = 60):
    """A hand sliding 6 cm and turning 20 degrees over two seconds: clean and noisy 3D tracks."""
    t = np.linspace(0.0, 1.0, frames)
    clean = []
    for s in t:
        angle = np.deg2rad(20 * s)
        R = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        clean.append(hp.rest_pose() @ R.T + np.array([0.0, 0.06 * s, 0.0]))
    clean = np.stack(clean)
    return clean, clean + rng.normal(0.0, 0.003, clean.shape)  # 3 mm tracker noise


def test_smoothing_reduces_keypoint_jitter(hand):
    _, cam = hand
    rng = np.random.default_rng(0)
    # beta multiplies a speed, so it depends on the units: metres/s for 3D tracks, pixels/s for 2D ones
    # (here ~385 px per metre, hence the 400x smaller beta).
    hp = HandPrompter(cam, smoothing=OneEuroFilter(frequency=30.0, min_cutoff=1.0, beta=20.0))
    hp_uv = HandPrompter(cam, smoothing=OneEuroFilter(frequency=30.0, min_cutoff=1.0, beta=0.05))
    clean, noisy = _moving_hand_track(hp, cam, rng)
    clean_uv, noisy_uv = cam.project(clean)[0], cam.project(noisy)[0]

    def jitter(track: np.ndarray, reference: np.ndarray) -> float:
        """RMS frame-to-frame change of the tracking error (m or px)."""
        return float(np.sqrt(np.mean(np.diff(track - reference, axis=0) ** 2)))

    def error(track: np.ndarray, reference: np.ndarray) -> float:
        return float(np.sqrt(np.mean((track - reference)[5:] ** 2)))

    # Measured: 3D jitter 3.9x lower, position error 1.55x lower; 2D jitter 3.7x, error 1.35x.
    smooth3d, smooth2d = hp.smooth(noisy), hp_uv.smooth(noisy_uv)
    assert jitter(noisy, clean) / jitter(smooth3d, clean) >= 3.0
    assert error(noisy, clean) / error(smooth3d, clean) >= 1.2
    assert jitter(noisy_uv, clean_uv) / jitter(smooth2d, clean_uv) >= 3.0
    assert error(noisy_uv, clean_uv) / error(smooth2d, clean_uv) >= 1.2
    # The rendered prompt video flickers less too.
    raw = HandPrompter(cam).render_track(noisy)
    smooth = hp.render_track(noisy)
    assert raw.shape == smooth.shape == (60, 128, 128, 3) and smooth.dtype == np.uint8
    flicker_raw = np.abs(np.diff(raw.astype(np.float32), axis=0)).mean()
    flicker_smooth = np.abs(np.diff(smooth.astype(np.float32), axis=0)).mean()
    assert flicker_smooth < 0.7 * flicker_raw, (flicker_smooth, flicker_raw)  # measured 0.47x
    # Smoothing state does not leak between tracks.
    np.testing.assert_array_equal(hp.smooth(noisy), hp.smooth(noisy))
    assert HandPrompter(cam).render_track(noisy[:0]).shape == (0, 128, 128, 3)


def test_bad_inputs_raise(hand):
    desc, cam = hand
    with pytest.raises(ValueError, match="camera"):
        HandPrompter()
    with pytest.raises(ValueError, match="points_frame"):
        HandPrompter(cam, points_frame="wrist")
    with pytest.raises(ValueError, match="hand"):
        HandPrompter(cam, description="panda")
    with pytest.raises(ValueError, match=r"\(21, 2\)"):
        HandPrompter(cam).render(np.zeros((20, 2)))
    with pytest.raises(ValueError, match="camera"):
        HandPrompter(size=(64, 64)).render(np.zeros((21, 3)))
    with pytest.raises(ValueError, match="backgrounds"):
        HandPrompter(cam).render_track(np.zeros((3, 21, 2)), backgrounds=np.zeros((2, 128, 128, 3), np.uint8))
