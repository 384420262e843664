"""SimEnv: Gymnasium contract, determinism, commanded vs achieved state, projection, bad input."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vap_env
from tests.conftest import arm_view
from vap_env.camera import Camera, ViewpointSampler
from vap_env.description import load_description
from vap_env.sim.env import SimEnv
from vap_env.sim.registration import arm_robots, env_id
from vap_env.tasks import TASKS

ROBOTS = arm_robots()


@pytest.fixture(scope="module")
def push_env():
    env = SimEnv(robot="panda", task="push", obs_mode="both", render_mode="rgb_array")
    yield env
    env.close()


def test_ids_registered():
    assert set(vap_env.SIM_ENV_IDS) == {env_id(r, t) for r in ROBOTS for t in TASKS}
    assert env_id("kuka_iiwa", "push") == "vap_env/KukaIiwaPush-Sim-v0"
    assert env_id("xarm6", "reach") == "vap_env/Xarm6Reach-Sim-v0"
    env = gym.make("vap_env/PandaPush-Sim-v0")
    assert env.spec.max_episode_steps == TASKS["push"].max_episode_steps == 50
    assert env.observation_space.shape == (64, 64, 3)
    env.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"obs_mode": "both", "camera": "random", "render_mode": "rgb_array"},
        {"obs_mode": "state", "action_mode": "joint_delta"},
    ],
    ids=["image", "both-random-render", "state-joint"],
)
@pytest.mark.parametrize("env_name", vap_env.SIM_ENV_IDS)
def test_check_env(env_name, kwargs):
    env = gym.make(env_name, **kwargs)
    check_env(env.unwrapped)
    env.close()


def _rollout(env: SimEnv, seed: int, steps: int = 8) -> list:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)  # the same actions for every rollout
    frames = [(obs, info)]
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        frames.append((obs, info))
    return frames


def test_same_seed_same_episode_different_seed_differs():
    env = SimEnv(robot="panda", task="push", obs_mode="both", camera="random", image_size=32)
    a = _rollout(env, seed=3)
    _rollout(env, seed=11)  # a different history in between must not matter
    b = _rollout(env, seed=3)
    c = _rollout(env, seed=4)
    env.close()
    for (obs_a, info_a), (obs_b, info_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
        np.testing.assert_array_equal(obs_a["state"], obs_b["state"])
        np.testing.assert_array_equal(info_a["object_pose"], info_b["object_pose"])
        np.testing.assert_array_equal(info_a["prompt"], info_b["prompt"])
    assert not np.array_equal(a[0][0]["state"], c[0][0]["state"])
    assert not np.array_equal(a[0][0]["image"], c[0][0]["image"])


def test_fresh_arrays_each_step(push_env):
    obs, info = push_env.reset(seed=0)
    obs2, *_ = push_env.step(np.zeros(4, dtype=np.float32))
    obs["image"][:] = 0
    obs["state"][:] = 0
    info["robot_mask"][:] = False
    assert obs2["image"].any() and obs2["state"].any()
    assert push_env.render().any()


@pytest.mark.parametrize("robot", ROBOTS)
def test_1000_random_steps(robot):
    env = gym.make(env_id(robot, "push"), obs_mode="state")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    episodes = 1
    for _ in range(1000):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs), obs
        assert np.isfinite(reward) and reward <= 0
        if terminated or truncated:
            obs, _ = env.reset()
            episodes += 1
    assert episodes >= 1000 // TASKS["push"].max_episode_steps
    env.close()


def test_commanded_versus_achieved():
    env = SimEnv(robot="panda", task="reach", obs_mode="state")
    _, info = env.reset(seed=0)
    start = info["commanded_ee_position"]
    for _ in range(5):
        _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0, -1.0], dtype=np.float32))
    np.testing.assert_allclose(info["commanded_ee_position"], start + [0.1, 0, 0], atol=1e-6)
    assert np.linalg.norm(info["ee_position"] - info["commanded_ee_position"]) < 0.005  # tracking lag
    assert info["commanded_gripper"] == 0.0 and info["gripper"] < 0.05
    np.testing.assert_allclose(
        env.robot.ee_pose(info["commanded_joints"])[0], info["commanded_ee_position"], atol=1e-3
    )
    # Out-of-range actions are clipped: 3.0 moves exactly as far as 1.0.
    _, _, _, _, clipped = env.step(np.array([0.0, 3.0, 0.0, 1.0], dtype=np.float32))
    np.testing.assert_allclose(
        clipped["commanded_ee_position"] - info["commanded_ee_position"], [0, 0.02, 0], atol=1e-6
    )
    assert clipped["commanded_gripper"] == 1.0
    # The commanded TCP never leaves the workspace box, however long the policy pushes down.
    for _ in range(30):
        _, _, _, _, info = env.step(np.array([0.0, 0.0, -1.0, 1.0], dtype=np.float32))
    assert info["commanded_ee_position"][2] == pytest.approx(env.workspace[0][2])
    assert info["ee_position"][2] > 0.0
    env.close()


@pytest.mark.parametrize("robot", ["panda", "kuka_iiwa", "xarm6"])
def test_achieved_tcp_is_the_kinematic_models(robot):
    # SimEnv reads the achieved TCP from its simulated arm's link; it must be the kinematic model's FK of the
    # achieved joints, the TCP the prompts are drawn from.
    env = SimEnv(robot=robot, task="push", obs_mode="state", info_prompt=False)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(12):
        _, _, _, _, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        np.testing.assert_allclose(info["ee_position"], env.robot.ee_pose(info["joints"])[0], atol=1e-9)
    assert np.linalg.norm(info["ee_position"] - env.robot.ee_pose(env.robot.home)[0]) > 0.02  # it moved
    env.close()


def test_info_and_state_layout(push_env):
    obs, info = push_env.reset(seed=5)
    obs, reward, _, _, info = push_env.step(np.array([0.2, -0.3, 0.1, 0.5], dtype=np.float32))
    state, layout = obs["state"], push_env.state_layout
    assert list(layout) == ["joints", "ee_position", "gripper", "object_position", "goal"]
    assert state.shape == (push_env.robot.num_joints + 10,) and state.dtype == np.float32
    np.testing.assert_allclose(state[layout["joints"]], info["joints"], atol=1e-6)
    np.testing.assert_allclose(state[layout["ee_position"]], info["ee_position"], atol=1e-6)
    np.testing.assert_allclose(state[layout["object_position"]], info["object_pose"][:3], atol=1e-6)
    np.testing.assert_allclose(state[layout["goal"]], info["goal"], atol=1e-6)
    assert state[layout["gripper"]][0] == pytest.approx(info["gripper"], abs=1e-6)
    assert info["object_pose"].shape == (7,)
    assert info["prompt"].shape == (64, 64, 3) and info["prompt"].dtype == np.uint8 and info["prompt"].any()
    assert info["robot_mask"].shape == info["object_mask"].shape == (64, 64)
    assert info["robot_mask"].sum() > 50 and info["object_mask"].sum() > 3
    dist = np.linalg.norm(info["object_pose"][:3] - info["goal"])
    near = np.linalg.norm(info["ee_position"] - info["object_pose"][:3])
    assert info["reward_dist"] == pytest.approx(-dist)
    assert info["reward_near"] == pytest.approx(-0.1 * near)
    assert reward == pytest.approx(info["reward_dist"] + info["reward_near"])
    assert info["is_success"] == (dist < 0.05)


def test_success_terminates(push_env):
    push_env.reset(seed=1)
    goal = push_env.task.get_goal()
    push_env.scene.set_base_pose("object", goal)  # a cube placed on the goal
    _, _, terminated, truncated, info = push_env.step(np.zeros(4, dtype=np.float32))
    assert info["is_success"] and terminated and not truncated


def test_state_mode_never_renders(monkeypatch):
    env = SimEnv(robot="panda", task="push", obs_mode="state", render_mode="rgb_array")
    env.reset(seed=0)

    def no_render(camera):
        raise AssertionError("state-only envs must not render")

    monkeypatch.setattr(env.scene, "render", no_render)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert "robot_mask" not in info and info["prompt"].shape == (64, 64, 3)
    monkeypatch.undo()
    assert env.render().shape == (64, 64, 3)  # on demand
    frame = env.frame()
    assert frame is env.frame()  # rendered once per step
    assert frame.robot_mask.sum() > 50 and frame.object_mask.sum() > 3
    env.close()
    env.close()


def _trajectory(env: SimEnv, seed: int, steps: int) -> list:
    """(obs, reward, terminated, info) of every step of a fixed random-action rollout, resets included."""
    rng = np.random.default_rng(seed)
    out = [(*env.reset(seed=seed), 0.0, False)]
    for t in range(steps):
        obs, reward, terminated, _, info = env.step(rng.uniform(-1.2, 1.2, env.action_space.shape))
        out.append((obs, info, reward, terminated))
        if terminated or t == steps // 2:
            out.append((*env.reset(), 0.0, False))  # a reset mid-way, drawn from the env's np_random
    return out


def _assert_same(a, b, path: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}/{k}")
    else:
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task": "push", "obs_mode": "state"},
        {"task": "reach", "obs_mode": "state", "action_mode": "joint_delta"},
        {"task": "push", "obs_mode": "both", "camera": "random", "image_size": 32},
    ],
    ids=["push-state", "reach-state-joint", "push-both-random"],
)
def test_info_prompt_only_decides_the_prompt(kwargs):
    """``info_prompt=False`` leaves ``info["prompt"]`` out and changes nothing else: the same seed and actions
    give bit-identical observations (images too), rewards, terminations and other info entries."""
    with_prompt, without = SimEnv(**kwargs), SimEnv(**kwargs, info_prompt=False)
    assert with_prompt.info_prompt and not without.info_prompt
    a, b = _trajectory(with_prompt, seed=4, steps=30), _trajectory(without, seed=4, steps=30)
    with_prompt.close()
    without.close()
    for (obs_a, info_a, reward_a, term_a), (obs_b, info_b, reward_b, term_b) in zip(a, b, strict=True):
        assert info_a["prompt"].shape == (with_prompt.image_size, with_prompt.image_size, 3)
        assert "prompt" not in info_b
        assert reward_a == reward_b and term_a == term_b
        _assert_same(obs_a, obs_b)
        _assert_same({k: v for k, v in info_a.items() if k != "prompt"}, info_b)
    masks = "robot_mask" in a[-1][1]
    assert masks == (kwargs["obs_mode"] != "state")  # masks come with rendered images, whatever the option


def test_state_only_without_prompt_does_no_image_work(monkeypatch):
    env = gym.make(env_id("panda", "push"), obs_mode="state", info_prompt=False)
    base = env.unwrapped

    def no_images(*args, **kwargs):
        raise AssertionError("a state-only env with info_prompt=False must not draw or render")

    monkeypatch.setattr(base.prompter, "render", no_images)
    monkeypatch.setattr(base.scene, "render", no_images)
    _, info = env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(env.action_space.sample())
    assert "prompt" not in info and "robot_mask" not in info
    monkeypatch.undo()
    assert base.frame().robot_mask.any()  # images are still there on demand
    check_env(base)
    env.close()


def test_render_without_mode_warns():
    env = SimEnv(robot="panda", task="reach", obs_mode="state")
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    env.close()


def test_given_camera_is_used_and_resized():
    camera = Camera.look_at([1.2, 0.4, 0.9], [0.5, 0.0, 0.1], 128, 128)
    env = SimEnv(robot="panda", task="push", image_size=64, camera=camera)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and (env.camera.width, env.camera.height) == (64, 64)
    np.testing.assert_allclose(env.camera.extrinsics, camera.extrinsics)
    env.close()


@pytest.mark.parametrize("robot", ROBOTS)
def test_robot_projection_matches_render(robot, marker_errors):
    """The arm's TCP and link origins, projected through `env.camera`, land within 0.5 px of where the
    renderer draws them, and the kinematic model sits exactly where the physics body is."""
    desc = load_description(robot)  # a random view around one that sees the whole arm
    camera = ViewpointSampler.around(arm_view(desc)).sample(np.random.default_rng(2), 192, 192)
    env = SimEnv(robot=robot, task="push", obs_mode="image", image_size=192, camera=camera)
    env.reset(seed=2)
    for action in np.random.default_rng(0).uniform(-1, 1, (6, 4)):
        _, _, _, _, info = env.step(action.astype(np.float32))
    links = env.robot.arm_joint_ids  # a URDF joint's child link shares its index
    kin, _ = env.robot.link_frames(info["joints"], info["gripper"], list(links))
    phys = np.array([env.scene.get_link_position("robot", link) for link in links])
    np.testing.assert_allclose(kin, phys, atol=2e-3)
    # Every skeleton keypoint in view lies within 1 px of the robot mask; with rows flipped (the OpenGL/OpenCV
    # convention mix-up) some do not, so the check discriminates.
    uv, _ = env.camera.project(env.robot.fk(info["joints"], info["gripper"]))
    flipped = uv * [1, -1] + [0, env.camera.height - 1]
    assert _fraction_near_mask(uv, info["robot_mask"]) == 1.0
    assert _fraction_near_mask(flipped, info["robot_mask"]) < 1.0
    points = np.vstack([info["ee_position"], kin])
    errors = marker_errors(env.scene, env.camera, points)
    assert len(errors) >= 3  # the TCP and at least two link origins in view
    assert np.hypot(*errors.T).max() < 0.5, errors  # measured: at most 0.18 px on every arm
    env.close()


def _fraction_near_mask(uv: np.ndarray, mask: np.ndarray) -> float:
    """Share of the in-image points (K, 2) within 1 px of a True pixel of ``mask``."""
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    cols, rows = np.round(uv).astype(int).T
    inside = (cols >= 0) & (cols < mask.shape[1]) & (rows >= 0) & (rows < mask.shape[0])
    assert inside.sum() >= 5
    return float(np.mean(distance[rows[inside], cols[inside]] <= 1.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"robot": "r2d2"}, "unknown robot 'r2d2'; simulated robots: .*panda"),
        ({"robot": "human_hand"}, "is a hand, it has no simulated body; simulated robots: .*panda"),
        ({"task": "stack"}, "reach, push"),
        ({"camera": "wrist"}, "fixed, random"),
        ({"action_mode": "torque"}, "ee_delta, joint_delta"),
        ({"obs_mode": "depth"}, "image, state, both"),
        ({"prompt": "text"}, "skeleton"),
        ({"render_mode": "human"}, "rgb_array"),
        ({"info_prompt": "no"}, "`info_prompt` must be True or False, got 'no'"),
        ({"info_prompt": None}, "`info_prompt` must be True or False, got None"),
        ({"info_prompt": 1}, "`info_prompt` must be True or False, got 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimEnv(**kwargs)


@pytest.mark.parametrize("action_mode", ["ee_delta", "joint_delta"])
def test_bad_actions(action_mode):
    env = SimEnv(robot="panda", task="reach", obs_mode="state", action_mode=action_mode)
    env.reset(seed=0)
    n = env.action_space.shape[0]
    for bad in (np.nan, np.inf, -np.inf):
        action = np.zeros(n, dtype=np.float32)
        action[1] = bad
        with pytest.raises(ValueError, match="finite"):
            env.step(action)
    with pytest.raises(ValueError, match=rf"\({n},\)"):
        env.step(np.zeros(n + 1, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"\({n},\)"):
        env.step(np.zeros((1, n), dtype=np.float32))
    env.close()
