import numpy as np
import pytest

from vap_env.cli import main
from vap_env.data import EpisodeDataset
from vap_env.sim.env import SimEnv


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "ds"
    code = main(
        [
            "collect",
            "--robot",
            "panda",
            "--task",
            "push",
            "--episodes",
            "2",
            "--policy",
            "scripted:noise=0.2",
            "--image-size",
            "32",
            "--max-steps",
            "8",
            "--seed",
            "5",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_collect_writes_what_the_simulator_showed(recorded):
    ds = EpisodeDataset(recorded)
    assert len(ds) == 2 and ds.robot == "panda" and ds.image_size == (32, 32)
    ep = ds[0]
    assert ep.seed == 5 and ep.policy == "scripted:noise=0.2"
    t = ep.num_frames
    assert 2 <= t <= 9 and ep.actions.shape == (t - 1, 4) and ep.robot_mask.shape == (t, 32, 32)
    # The first frame and state are the simulator's for that seed.
    env = SimEnv(robot="panda", task="push", obs_mode="both", image_size=32)
    obs, info = env.reset(seed=5)
    np.testing.assert_array_equal(ep.frames[0], obs["image"])
    np.testing.assert_allclose(ep.commanded_joints[0], info["commanded_joints"], atol=1e-6)
    np.testing.assert_allclose(ep.object_poses[0], info["object_pose"], atol=1e-6)
    np.testing.assert_array_equal(ep.robot_mask[0], info["robot_mask"])
    # Replaying the recorded actions reproduces the recorded frames and states.
    for k, action in enumerate(ep.actions):
        obs, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(ep.frames[k + 1], obs["image"])
        np.testing.assert_allclose(ep.joints[k + 1], info["joints"], atol=1e-5)
    env.close()
    # Commanded and achieved states are both kept, and they differ (the arm lags its command).
    assert np.abs(ep.commanded_joints[1:] - ep.joints[1:]).max() > 1e-4
    assert ep.robot_mask.any() and ep.object_mask.any()


def test_collect_resumes_instead_of_duplicating(recorded, capsys):
    assert (
        main(
            [
                "collect",
                "--episodes",
                "3",
                "--policy",
                "scripted:noise=0.2",
                "--image-size",
                "32",
                "--max-steps",
                "8",
                "--seed",
                "5",
                "--out",
                str(recorded),
                "--quiet",
            ]
        )
        == 0
    )
    ds = EpisodeDataset(recorded)
    assert [e["seed"] for e in ds.episodes] == [5, 6, 7]
    assert "recorded 1 episodes" in capsys.readouterr().out


def test_collect_refuses_a_mismatched_dataset(recorded, capsys):
    code = main(["collect", "--episodes", "1", "--image-size", "64", "--out", str(recorded), "--quiet"])
    assert code == 2
    assert "image_size" in capsys.readouterr().err


def test_info_and_robots_commands(recorded, capsys):
    assert main(["info", str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "episodes" in out and "32x32" in out and "panda / push" in out
    # the cube's size in pixels, from its masks: at 32x32 with the default camera about 2 px a side
    size = EpisodeDataset(recorded).summary()["object_px"]
    masks = np.concatenate([e.object_mask for e in EpisodeDataset(recorded)])
    visible = masks.sum(axis=(1, 2))
    assert size["median"] == pytest.approx(np.median(np.sqrt(visible[visible > 0])))
    assert 1.0 < size["p10"] <= size["median"] <= size["p90"] < 4.0
    assert f"object size    {size['median']:.1f} px a side" in out
    assert main(["robots"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"panda", "kuka_iiwa", "xarm6", "human_hand"} <= set(rows)
    assert " 7 " in rows["panda"] and " 6 " in rows["xarm6"]


def test_bad_names_list_the_valid_ones(tmp_path, capsys):
    assert (
        main(["collect", "--robot", "r2d2", "--episodes", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    )
    assert "panda" in capsys.readouterr().err
    assert main(["collect", "--task", "fly", "--episodes", "1", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "push" in capsys.readouterr().err
