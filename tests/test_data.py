import json

import numpy as np
import pytest

from vap_env.camera import Camera
from vap_env.data import DatasetError, DatasetWriter, Episode, EpisodeDataset, load_episode, save_episode


def make_episode(t: int = 6, h: int = 16, w: int = 16, seed: int = 0, success: bool = True) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        joints=rng.normal(size=(t, 7)).astype(np.float32),
        gripper=rng.uniform(size=t).astype(np.float32),
        commanded_joints=rng.normal(size=(t, 7)).astype(np.float32),
        commanded_gripper=rng.uniform(size=t).astype(np.float32),
        ee_position=rng.normal(size=(t, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (t - 1, 4)).astype(np.float32),
        rewards=rng.normal(size=t - 1).astype(np.float32),
        object_poses=rng.normal(size=(t, 7)).astype(np.float32),
        goal=np.array([0.5, 0.1, 0.0], np.float32),
        robot_mask=rng.uniform(size=(t, h, w)) > 0.5,
        object_mask=rng.uniform(size=(t, h, w)) > 0.9,
        success=success,
        camera=Camera.orbit([0.4, 0, 0.2], 1.2, 50, -30, w, h),
        robot="panda",
        task="push",
        seed=seed,
        policy="scripted:noise=0.2",
    )


def assert_same(a: Episode, b: Episode) -> None:
    for name in (
        "frames",
        "joints",
        "gripper",
        "commanded_joints",
        "commanded_gripper",
        "ee_position",
        "actions",
        "rewards",
        "object_poses",
        "goal",
        "robot_mask",
        "object_mask",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("success", "robot", "task", "action_mode", "seed", "policy"):
        assert getattr(a, name) == getattr(b, name)
    np.testing.assert_array_equal(a.camera.extrinsics, b.camera.extrinsics)
    np.testing.assert_array_equal(a.camera.intrinsics, b.camera.intrinsics)


def test_episode_round_trip(tmp_path):
    ep = make_episode()
    save_episode(tmp_path / "e.npz", ep)
    assert_same(load_episode(tmp_path / "e.npz"), ep)
    assert not list(tmp_path.glob("*.tmp"))


def test_dataset_writer_reader_and_summary(tmp_path):
    writer = DatasetWriter(
        tmp_path / "ds",
        {
            "robot": "panda",
            "task": "push",
            "image_size": [16, 16],
            "camera_mode": "fixed",
            "action_mode": "ee_delta",
            "fps": 10,
        },
    )
    eps = [make_episode(seed=i, success=i % 2 == 0, t=5 + i) for i in range(3)]
    for ep in eps:
        writer.add(ep)
    ds = EpisodeDataset(tmp_path / "ds")
    assert len(ds) == 3
    for got, want in zip(ds, eps, strict=True):
        assert_same(got, want)
    s = ds.summary()
    assert s["episodes"] == 3 and s["frames"] == 5 + 6 + 7
    assert s["success_rate"] == pytest.approx(2 / 3)
    # Re-opening continues the dataset; another robot is refused.
    again = DatasetWriter(tmp_path / "ds", {"robot": "panda", "task": "push", "image_size": [16, 16]})
    assert again.num_episodes == 3 and again.recorded_seeds() == {0, 1, 2}
    with pytest.raises(ValueError, match="robot='panda'"):
        DatasetWriter(tmp_path / "ds", {"robot": "xarm6", "task": "push", "image_size": [16, 16]})
    with pytest.raises(ValueError, match="16"):
        again.add(make_episode(h=8, w=8))


def test_truncated_and_corrupt_files_name_the_file(tmp_path):
    path = tmp_path / "e.npz"
    save_episode(path, make_episode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="e.npz"):
        load_episode(path)
    # Flip bytes in the middle of the archive: zip's CRC catches it.
    corrupt = bytearray(data)
    for i in range(len(corrupt) // 3, len(corrupt) // 3 + 64):
        corrupt[i] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DatasetError, match="e.npz"):
        load_episode(path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_episode(tmp_path / "missing.npz")


def test_not_a_dataset_and_corrupt_index(tmp_path):
    with pytest.raises(DatasetError, match="vap-env collect"):
        EpisodeDataset(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text("{not json")
    with pytest.raises(DatasetError, match="info.json"):
        EpisodeDataset(tmp_path)


def test_inconsistent_episode_is_rejected():
    ep = make_episode()
    with pytest.raises(ValueError, match="actions"):
        Episode(**{**ep.__dict__, "actions": ep.actions[:-1]})
    with pytest.raises(ValueError, match="frames"):
        Episode(**{**ep.__dict__, "frames": ep.frames.astype(np.float32)})


def test_index_is_plain_json(tmp_path):
    writer = DatasetWriter(tmp_path, {"robot": "panda", "task": "push", "image_size": [16, 16]})
    writer.add(make_episode())
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    assert info["episodes"][0]["file"] == "episode_000000.npz"
    assert "observation.images.camera" in info["features"]
