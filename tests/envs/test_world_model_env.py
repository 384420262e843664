"""WorldModelEnv: Gymnasium contract, determinism, reset modes, prompts reaching the model, bad input."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import vap_env
from tests.conftest import arm_view
from vap_env.camera import Camera
from vap_env.data import DatasetWriter
from vap_env.description import load_description
from vap_env.envs import wm_env_id
from vap_env.envs.world_model_env import WorldModelEnv
from vap_env.model import ActionToVideoModel
from vap_env.model.loading import default_model_path
from vap_env.policies import make_policy
from vap_env.recording import record_episode
from vap_env.sim.env import SimEnv
from vap_env.sim.registration import arm_robots
from vap_env.tasks import TASKS


@pytest.mark.parametrize("obs_mode", ["image", "state", "both"])
def test_check_env(model_dir: Path, obs_mode: str) -> None:
    env = gym.make("vap_env/PandaPush-WM-v0", model=model_dir, obs_mode=obs_mode, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    env.close()
    env.close()


def test_ids_registered_with_the_sim_time_limits(model_dir: Path) -> None:
    assert set(vap_env.WM_ENV_IDS) == {wm_env_id(r, t) for r in arm_robots() for t in ("reach", "push")}
    assert wm_env_id("kuka_iiwa", "push") == "vap_env/KukaIiwaPush-WM-v0"
    env = gym.make("vap_env/PandaReach-WM-v0", model=model_dir, obs_mode="state")
    assert env.spec.max_episode_steps == TASKS["reach"].max_episode_steps
    assert env.observation_space.shape == (7 + 7,)
    env.close()


def _rollout(env: WorldModelEnv, seed: int, actions: np.ndarray) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    frames = [obs["image"]]
    for action in actions:
        obs, *_ = env.step(action)
        frames.append(obs["image"])
    return frames


def test_same_seed_same_frames_other_seed_or_actions_differ(model: ActionToVideoModel) -> None:
    env = WorldModelEnv(model=model, task="push", obs_mode="both", camera="random")
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 4)).astype(np.float32)
    a = _rollout(env, 3, actions)
    _rollout(env, 11, actions)  # a different history in between must not matter
    b = _rollout(env, 3, actions)
    for frame_a, frame_b in zip(a, b, strict=True):
        np.testing.assert_array_equal(frame_a, frame_b)
    c = _rollout(env, 4, actions)
    assert all(np.abs(x.astype(int) - y.astype(int)).mean() > 1 for x, y in zip(a[1:], c[1:], strict=True))
    # the action reaches the model through the prompt: same seed, other actions, other frames (the tiny
    # model's prompt effect is small, ~0.05 grey levels on average, but same-seed frames are otherwise equal)
    d = _rollout(env, 3, -actions)
    np.testing.assert_array_equal(a[0], d[0])
    assert all(np.abs(x.astype(int) - y.astype(int)).mean() > 0.01 for x, y in zip(a[1:], d[1:], strict=True))
    env.close()


def test_sim_reset_starts_from_the_simulator_frame(model: ActionToVideoModel) -> None:
    wm = WorldModelEnv(
        model=model,
        task="push",
        obs_mode="both",
        camera="random",
        render_mode="rgb_array",
        render_view="both",
    )
    sim = SimEnv(robot="panda", task="push", obs_mode="both", camera="random")
    obs, info = wm.reset(seed=7)
    sim_obs, sim_info = sim.reset(seed=7)
    np.testing.assert_array_equal(obs["image"], sim_obs["image"])
    np.testing.assert_array_equal(info["prompt"], sim_info["prompt"])
    np.testing.assert_array_equal(wm.camera.extrinsics, sim.camera.extrinsics)
    np.testing.assert_allclose(info["goal"], sim_info["goal"])
    # the cube position is estimated from the frame, never read from the simulator
    assert info["object_visible"]
    assert np.linalg.norm(info["object_position"][:2] - sim_info["object_pose"][:2]) < 0.01
    layout = wm.interface.state_layout
    np.testing.assert_allclose(obs["state"][layout["joints"]], sim_obs["state"][layout["joints"]], atol=1e-5)
    np.testing.assert_allclose(
        obs["state"][layout["ee_position"]], sim_obs["state"][layout["ee_position"]], atol=1e-4
    )
    # the same action gives the same commanded state and prompt in both worlds
    action = np.array([0.5, -0.3, -1.0, -1.0], dtype=np.float32)
    obs, reward, terminated, truncated, info = wm.step(action)
    _, _, _, _, sim_info = sim.step(action)
    np.testing.assert_array_equal(info["commanded_joints"], sim_info["commanded_joints"])
    np.testing.assert_array_equal(info["prompt"], sim_info["prompt"])
    assert reward == pytest.approx(info["reward_dist"] + info["reward_near"]) and not truncated
    assert wm.render().shape == (64, 128, 3)
    np.testing.assert_array_equal(wm.render()[:, 64:], info["prompt"])
    np.testing.assert_array_equal(wm.render()[:, :64], obs["image"])
    wm.close()
    sim.close()


def test_image_reset_and_a_scripted_expert(model: ActionToVideoModel) -> None:
    """Reach from a given image; the scripted expert drives the kinematic TCP to the goal: terminated."""
    env = gym.make("vap_env/PandaReach-WM-v0", model=model, obs_mode="state", reset_mode="image")
    base = env.unwrapped
    home_tcp = base.robot.ee_pose(base.robot.home)[0]
    goal = home_tcp + np.array([0.08, 0.05, -0.1])
    image = np.full((64, 64, 3), 120, dtype=np.uint8)
    options = {"image": image, "joints": base.robot.home, "goal": goal}
    obs, info = env.reset(seed=0, options=options)
    np.testing.assert_allclose(obs[base.interface.state_layout["goal"]], goal, atol=1e-6)
    assert base.frame.tobytes() == image.tobytes()
    policy = make_policy("scripted", env)
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):  # the registered time limit ends it otherwise
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        steps += 1
    assert terminated and info["is_success"] and steps < 10
    assert reward == pytest.approx(-np.linalg.norm(info["ee_position"] - goal))
    with pytest.raises(ValueError, match=r"needs options \['image', 'joints', 'goal'\]"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="must be uint8"):
        env.reset(options={**options, "image": image[:32]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={**options, "colour": 1})
    env.close()


def test_episode_reset_from_a_recording(model: ActionToVideoModel, tmp_path: Path) -> None:
    sim = gym.make("vap_env/PandaPush-Sim-v0", obs_mode="both")
    writer = DatasetWriter(tmp_path / "data", {"robot": "panda", "task": "push", "image_size": [64, 64]})
    episode = record_episode(sim, make_policy("random:seed=0", sim), seed=5, max_steps=3)
    writer.add(episode)
    sim.close()
    env = WorldModelEnv(model=model, task="push", reset_mode="episode", dataset=tmp_path / "data")
    obs, info = env.reset(seed=0, options={"episode": 0})
    np.testing.assert_array_equal(obs, episode.frames[0])
    np.testing.assert_allclose(info["goal"], episode.goal, atol=1e-6)
    np.testing.assert_allclose(env.camera.extrinsics, episode.camera.extrinsics)
    with pytest.raises(ValueError, match="holds 'push' episodes"):
        WorldModelEnv(model=model, task="reach", reset_mode="episode", dataset=tmp_path / "data")
    with pytest.raises(ValueError, match="needs `dataset`"):
        WorldModelEnv(model=model, reset_mode="episode")
    env.close()


def test_model_for_another_robot_or_size_is_refused(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="trained for robot 'panda', not 'kuka_iiwa'"):
        gym.make("vap_env/KukaIiwaPush-WM-v0", model=model_dir)
    with pytest.raises(ValueError, match="trained for robot 'panda', not 'kuka_iiwa'"):
        gym.make("vap_env/KukaIiwaPush-WM-v0")  # the shipped default is a Panda model
    with pytest.raises(ValueError, match="makes 64x64 frames, not 32x32"):
        WorldModelEnv(model=model_dir, image_size=32)
    monkeypatch.setattr(
        "vap_env.model.loading.DEFAULT_MODEL_DIR", tmp_path / "stripped"
    )  # an install without it
    with pytest.raises(FileNotFoundError, match="missing from this installation .* pass model=DIR"):
        WorldModelEnv()
    with pytest.raises(FileNotFoundError, match="pass model=DIR"):
        default_model_path()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        WorldModelEnv(model=model_dir.parent / "missing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "stack"}, "reach, push"),
        ({"action_mode": "torque"}, "ee_delta, joint_delta"),
        ({"obs_mode": "depth"}, "image, state, both"),
        ({"camera": "wrist"}, "fixed, random"),
        ({"reset_mode": "dream"}, "sim, episode, image"),
        ({"render_mode": "human"}, "rgb_array"),
        ({"render_view": "side"}, "frame, prompt, both"),
    ],
)
def test_bad_arguments(model: ActionToVideoModel, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorldModelEnv(model=model, **kwargs)


@pytest.mark.parametrize("action_mode", ["ee_delta", "joint_delta"])
def test_bad_actions_and_clipping(model: ActionToVideoModel, action_mode: str) -> None:
    env = WorldModelEnv(model=model, task="reach", obs_mode="state", action_mode=action_mode)
    env.reset(seed=0)
    n = env.action_space.shape[0]
    before = env.episode.command
    for bad in (np.nan, np.inf):
        action = np.zeros(n, dtype=np.float32)
        action[1] = bad
        with pytest.raises(ValueError, match="finite"):
            env.step(action)
    with pytest.raises(ValueError, match=rf"\({n},\)"):
        env.step(np.zeros(n + 1, dtype=np.float32))
    assert env.episode.command is before  # a refused action moves nothing
    big, unit = np.full(n, 3.0, dtype=np.float32), np.ones(n, dtype=np.float32)
    _, _, _, _, clipped = env.step(big)
    env.reset(seed=0)
    _, _, _, _, full = env.step(unit)
    np.testing.assert_array_equal(clipped["commanded_joints"], full["commanded_joints"])
    env.close()


def test_step_before_reset_and_render_without_mode(model: ActionToVideoModel) -> None:
    env = WorldModelEnv(model=model, task="reach")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(4, dtype=np.float32))
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    env.close()


def _warped_hull_model(**extra: object) -> tuple:
    """A tiny 64x64 motion-compensated ``hull`` model, and the list its ``generate`` calls append their
    context batches to."""
    from tests.conftest import tiny_world_model

    model = tiny_world_model(
        robot="panda",
        image_size=64,
        patch_size=8,
        num_layers=2,
        controlnet_layers=1,
        num_inference_steps=1,
        prompt="hull",
        context_frames=2,
        context_layout="channels",
        warped_context=True,
        **extra,
    ).eval()
    seen = []
    generate = model.generate
    model.generate = lambda context, *args, **kwargs: (
        seen.append(context.clone()),
        generate(context, *args, **kwargs),
    )[1]
    return model, seen


def test_a_motion_compensated_model_gets_the_newest_frame_warped_to_the_commanded_pose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vap_env.envs.imagined_world import ImaginedWorld
    from vap_env.model.codec import frames_to_tensor
    from vap_env.prompts.warp import PosedRobot, RobotAppearance, warp_to_pose

    model, seen = _warped_hull_model()
    assert model.spec.warped_context
    posings = []
    pose = PosedRobot.at
    monkeypatch.setattr(PosedRobot, "at", lambda *a: (posings.append(1), pose(*a))[1])
    # a view of the whole arm: under the Panda's workspace camera the hand comes into view, and drawing its
    # unseen pixels from the robot's render poses it once more (RobotAppearance)
    camera = Camera.from_spec(arm_view(load_description("panda")), 64, 64)
    world = ImaginedWorld(model, reset_mode="sim", obs_mode="image", camera=camera)
    episode = world.new_episode(np.random.default_rng(0), seed=3)
    appearance = RobotAppearance(world.robot, episode.camera)  # asked what the world's is asked, in order
    for step in range(2):
        frames, before = episode.frames.copy(), episode.command
        posings.clear()
        world.advance([episode], np.array([[0.8, -0.5, 0.3, -1.0]], np.float32))
        # the first step poses both states; the next starts where the last ended and poses only its target
        assert len(posings) == (2 if step == 0 else 1)
        after = episode.command
        expected = warp_to_pose(
            frames[-1],
            world.robot,
            episode.camera,
            (before.joints, before.gripper),
            (after.joints, after.gripper),
            appearance,
        )
        torch.testing.assert_close(seen[step][0], frames_to_tensor(np.stack([frames[-1], expected])))
        assert not np.array_equal(expected, frames[-1])
    world.close()


def test_an_object_warp_model_moves_the_cube_where_its_object_dynamics_sends_it() -> None:
    from vap_env.envs.imagined_world import ImaginedWorld
    from vap_env.model.codec import frames_to_tensor
    from vap_env.model.object_dynamics import ObjectDynamics
    from vap_env.prompts.warp import PosedRobot, RobotAppearance, move_object, warp_posed

    model, seen = _warped_hull_model(object_warp=True)
    # dynamics that push the cube 2 cm along +x at every step the TCP is within reach
    dynamics = ObjectDynamics()
    with torch.no_grad():
        last = dynamics.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0]))  # x 50 scaled: 2 cm
    model.object_dynamics = dynamics.eval()
    world = ImaginedWorld(model, reset_mode="sim", obs_mode="image")
    episode = world.new_episode(np.random.default_rng(0), seed=3)
    assert episode.sprite is not None  # the cube is in the first frame
    np.testing.assert_allclose(episode.object_position, episode.estimate.object_position)
    appearance = RobotAppearance(world.robot, episode.camera)
    action = np.array([[0.3, 0.0, 0.0, 1.0]], np.float32)
    for near in (False, True):
        tcp = world._tcp(episode.command)
        # the dynamics' state put 30 cm from the TCP (out of reach), then 4 cm from it (within reach)
        at = np.array([tcp[0] + (0.04 if near else 0.3), tcp[1], episode.object_position[2]])
        episode.object_position = at.copy()
        frames, before = episode.frames.copy(), episode.command
        world.advance([episode], action)
        after = episode.command
        source = PosedRobot.at(world.robot, episode.camera, before.joints, before.gripper)
        target = PosedRobot.at(world.robot, episode.camera, after.joints, after.gripper)
        expected = warp_posed(frames[-1], source, target, appearance)
        if near:
            to = at + np.array([0.02, 0.0, 0.0])
            np.testing.assert_allclose(episode.object_position, to, atol=1e-6)
            moved = move_object(expected, episode.sprite, at, to, target.ids)
            assert not np.array_equal(moved, expected)  # the cube moved in the context
            expected = moved
        else:
            np.testing.assert_allclose(episode.object_position, at)  # out of reach: not moved
        torch.testing.assert_close(seen[-1][0], frames_to_tensor(np.stack([frames[-1], expected])))
        # the dynamics' cube is the task state that observations and rewards read, whatever an untrained
        # model's generated frame shows there
        np.testing.assert_allclose(episode.estimate.object_position, episode.object_position)
        np.testing.assert_allclose(world.info(episode)["object_position"], episode.object_position)
    del model.object_dynamics
    with pytest.raises(ValueError, match="has none"):
        ImaginedWorld(model, reset_mode="sim")
    world.close()
