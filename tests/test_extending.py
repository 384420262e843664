"""The extension points of docs/extending.md, each done here by adding one entry: a robot (a description
file), a prompt kind and a task (a table entry), a policy (a spec kind); a backbone is in
tests/model/test_loading.py. Every reader picks the new entry up."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from vap_env import description
from vap_env.camera import Camera
from vap_env.envs.estimation import estimate_task_state
from vap_env.kinematics import Robot
from vap_env.model import ActionToVideoModel
from vap_env.model.config import WorldModelConfig
from vap_env.policies import POLICY_BUILDERS, make_policy
from vap_env.policies.random_policy import RandomPolicy
from vap_env.policies.scripted import ScriptedReachPolicy
from vap_env.prompts import ActionPrompter
from vap_env.prompts.kinds import PROMPT_KINDS, PromptKind, prompt_kind
from vap_env.recording import collect
from vap_env.sim.env import SimEnv
from vap_env.sim.registration import env_id, register_sim_envs
from vap_env.sim.tasks import ReachTask, distance
from vap_env.tasks import TASKS, TaskSpec, task_spec
from vap_env.train.config import WorldModelTrainConfig
from vap_env.train.world_model_trainer import train_world_model

# ----------------------------------------------------------------------------------------- a robot


@pytest.fixture
def near_xarm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A robot folder holding the shipped descriptions plus one new file; the ids it registers go after."""
    robots = tmp_path / "robots"
    shutil.copytree(description.ROBOTS_DIR, robots)
    text = (robots / "xarm6.toml").read_text()
    text = text.replace('name = "xarm6"', 'name = "xarm6_near"', 1)
    text = re.sub(r"(?m)^display_name = .*$", 'display_name = "xArm6, near camera"', text)
    text = re.sub(r"(?m)^distance = .*$", "distance = 0.8", text)  # the [camera] orbit distance
    (robots / "xarm6_near.toml").write_text(text)
    monkeypatch.setattr(description, "ROBOTS_DIR", robots)
    known = set(gym.registry)
    new = [name for name in register_sim_envs() if name not in known]
    yield "xarm6_near"
    for name in new:
        del gym.registry[name]


def test_a_robot_is_one_description_file(near_xarm: str) -> None:
    assert near_xarm in description.list_robots()
    desc = description.load_description(near_xarm)
    assert desc.camera.distance == 0.8 and desc.display_name == "xArm6, near camera"
    env = gym.make(env_id(near_xarm, "push"), obs_mode="both", image_size=32)
    assert env.unwrapped.desc.name == "xarm6_near" and env.spec.max_episode_steps == 50
    policy = make_policy("scripted", env)
    obs, info = env.reset(seed=0)
    policy.reset(seed=0)
    for _ in range(50):
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            break
    assert info["is_success"], "the push expert solves seed 0 with the new description"
    # its skeleton prompt is drawn where the simulator renders the robot
    drawn = info["prompt"].any(axis=-1)
    assert drawn.sum() > 20 and (drawn & info["robot_mask"]).sum() / drawn.sum() > 0.7
    env.close()


# ----------------------------------------------------------------------------------------- a prompt kind


def _render_gripper_level(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    """A toy image prompt: the whole image at the gripper's openness as grey level."""
    level = np.uint8(round(255 * gripper))
    return np.full((prompter.camera.height, prompter.camera.width, 3), level, dtype=np.uint8)


def _render_tcp(prompter: ActionPrompter, q: np.ndarray, gripper: float) -> np.ndarray:
    """A toy vector prompt: the commanded TCP position and the gripper."""
    return np.append(prompter.robot.ee_pose(q)[0], gripper).astype(np.float32)


@pytest.fixture
def toy_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        PROMPT_KINDS, "gripper_level", PromptKind("gripper_level", "image", 3, _render_gripper_level)
    )
    monkeypatch.setitem(PROMPT_KINDS, "tcp", PromptKind("tcp", "vector", None, _render_tcp))


@pytest.fixture(scope="module")
def panda() -> Iterator[Robot]:
    robot = Robot("panda")
    yield robot
    robot.close()


def test_a_prompt_kind_is_one_table_entry(toy_kinds: None, panda: Robot) -> None:
    camera = Camera.from_spec(panda.desc.camera, 40, 32)  # width 40, height 32
    q = panda.home
    image = ActionPrompter(panda, camera, "gripper_level").render(q, 0.4)
    assert image.shape == (32, 40, 3) and image.dtype == np.uint8
    assert set(np.unique(image)) == {102}  # round(255 * 0.4)
    vector = ActionPrompter(panda, camera, "tcp").render(q, 0.4)
    np.testing.assert_allclose(vector, np.append(panda.ee_pose(q)[0], 0.4).astype(np.float32))

    # the model config validates against the table, and reads the conditioning from the entry
    config = WorldModelConfig.tiny(prompt="gripper_level")
    assert prompt_kind(config.prompt).conditioning == "image" and prompt_kind(config.prompt).channels == 3
    with pytest.raises(ValueError, match="`state_dim` must be >= 1 for prompt 'tcp', got 0"):
        WorldModelConfig.tiny(prompt="tcp")
    assert WorldModelConfig.tiny(prompt="tcp", state_dim=4).state_dim == 4

    # the simulator's info["prompt"] is the new kind's
    env = SimEnv(robot="panda", task="reach", obs_mode="state", image_size=16, prompt="gripper_level")
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.0, 0.0, 0.0, 0.0], dtype=np.float32))  # openness (0 + 1) / 2
    assert info["prompt"].shape == (16, 16, 3) and set(np.unique(info["prompt"])) == {128}
    env.close()


def test_a_new_prompt_kind_trains_and_drives_imagination(toy_kinds: None, tmp_path: Path) -> None:
    """The trainer renders the toy kind's clips, the model builds a ControlNet for it (an image kind) and
    the world-model env renders it each step: no reader names the kind."""
    data = tmp_path / "reach"
    collect("panda", "reach", 2, "scripted", data, image_size=32, max_steps=4, progress=False)
    config = WorldModelConfig.tiny(image_size=32, patch_size=4, num_layers=2, controlnet_layers=1,
                                   controlnet_encoder_channels=8, prompt="gripper_level")  # fmt: skip
    train = WorldModelTrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, eval_clips=2, val_episodes=1)
    result = train_world_model(data, tmp_path / "run", config, train)
    assert result["step"] == 2 and np.isfinite(result["heldout_psnr"])
    model = ActionToVideoModel.from_pretrained(tmp_path / "run" / "model")
    assert model.config.prompt == "gripper_level" and model.controlnet is not None
    env = gym.make("vap_env/PandaReach-WM-v0", model=model, obs_mode="both")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32))  # gripper fully open
    assert obs["image"].shape == (32, 32, 3) and set(np.unique(info["prompt"])) == {255}
    env.close()


def test_unknown_prompt_kinds_name_the_table(toy_kinds: None) -> None:
    message = "unknown prompt kind 'pointcloud'; valid kinds: skeleton, .*, none, gripper_level, tcp"
    with pytest.raises(ValueError, match=message):
        prompt_kind("pointcloud")
    with pytest.raises(ValueError, match="`conditioning` must be one of image, vector, none"):
        PromptKind("bad", "text", 3, _render_gripper_level)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`channels` must be None for vector kinds"):
        PromptKind("bad", "vector", 3, _render_tcp)


def test_the_shipped_prompt_kinds() -> None:
    assert list(PROMPT_KINDS) == ["skeleton", "depth_skeleton", "mask", "depth", "hull", "state", "none"]
    assert {k.name for k in PROMPT_KINDS.values() if k.conditioning == "image"} == {
        "skeleton",
        "depth_skeleton",
        "mask",
        "depth",
        "hull",
    }
    assert (prompt_kind("state").conditioning, prompt_kind("state").channels) == ("vector", None)
    assert (prompt_kind("none").conditioning, prompt_kind("none").channels) == ("none", 3)
    assert WorldModelConfig.tiny(prompt="depth").prompt == "depth"  # depth renders, so it trains


# ----------------------------------------------------------------------------------------- a task


class HighReachTask(ReachTask):
    """A toy reach variant: the goal always 25 cm above the table, success within 8 cm (reach: 3 cm)."""

    def __init__(self, scene, get_ee_position, z_range=(0.25, 0.25), distance_threshold=0.08) -> None:
        super().__init__(scene, get_ee_position, z_range, distance_threshold)

    @classmethod
    def for_workspace(cls, scene, get_ee_position, workspace):
        return cls(scene, get_ee_position)


HIGH_REACH = TaskSpec(
    name="highreach",
    rules=f"{__name__}:HighReachTask",
    max_episode_steps=12,
    has_object=False,
    estimator="vap_env.envs.estimation:estimate_reach_state",
    expert="vap_env.policies.scripted:ScriptedReachPolicy",
)


@pytest.fixture
def toy_task(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], gym.Env]]:
    """Adds the toy task to the table and registers its env ids; ``make()`` builds the Panda's. Every id
    it registered is removed afterwards."""
    monkeypatch.setitem(TASKS, HIGH_REACH.name, HIGH_REACH)
    known = set(gym.registry)
    new = [name for name in register_sim_envs() if name not in known]
    yield lambda: gym.make(env_id("panda", HIGH_REACH.name), obs_mode="state")
    for name in new:
        del gym.registry[name]


def _episode(env: gym.Env, policy, seed: int) -> list[tuple[bool, bool, dict]]:
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    steps = []
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        steps.append((terminated, truncated, info))
    return steps


def test_a_task_is_one_table_entry(toy_task: Callable[[], gym.Env]) -> None:
    assert "vap_env/PandaHighreach-Sim-v0" in gym.registry
    env = toy_task()
    assert env.spec.max_episode_steps == 12
    base = env.unwrapped
    assert isinstance(base.task, HighReachTask)
    assert list(base.state_layout) == ["joints", "ee_position", "gripper", "goal"]

    # the expert is the spec's; the success rule is the toy's 8 cm, the goal the toy's 25 cm height
    policy = make_policy("scripted", env)
    assert isinstance(policy, ScriptedReachPolicy)
    steps = _episode(env, policy, seed=0)
    terminated, truncated, last = steps[-1]
    gap = float(distance(last["ee_position"], last["goal"]))
    assert last["goal"][2] == 0.25
    assert terminated and not truncated and last["is_success"] and len(steps) == 3
    assert 0.03 < gap < 0.08, gap  # a success that reach's 3 cm would not count
    for _, _, info in steps:
        assert info["is_success"] == (distance(info["ee_position"], info["goal"]) < 0.08)
        assert info["reward_dist"] == pytest.approx(-distance(info["ee_position"], info["goal"]))

    # a random policy runs into the spec's time limit
    steps = _episode(env, RandomPolicy(env.action_space), seed=3)
    assert len(steps) == 12 and steps[-1][1] and not steps[-1][2]["is_success"]
    env.close()


def test_toy_task_rules_without_a_scene(toy_task: Callable[[], gym.Env]) -> None:
    scoring = task_spec("highreach").scoring()
    here, goal = np.array([0.5, 0.0, 0.25]), np.array([0.55, 0.0, 0.25])
    assert bool(scoring.is_success(here, goal)) and not bool(
        task_spec("reach").scoring().is_success(here, goal)
    )
    assert scoring.reward_terms(here, goal, here) == {"reward_dist": pytest.approx(-0.05)}
    with pytest.raises(RuntimeError, match="without a scene"):
        scoring.reset(np.random.default_rng(0))
    frame = np.zeros((16, 16, 3), dtype=np.uint8)
    camera = Camera.look_at([1.2, 0.4, 0.9], [0.5, 0.0, 0.1], 16, 16)
    estimate = estimate_task_state("highreach", frame, camera, here, goal)
    assert estimate.object_position is None and np.array_equal(estimate.achieved_goal, here)


def test_unknown_tasks_name_the_table() -> None:
    with pytest.raises(ValueError, match="unknown task 'stack'; known tasks: reach, push"):
        task_spec("stack")
    with pytest.raises(ValueError, match="`rules` must be a 'module:attr' string"):
        TaskSpec("bad", "ReachTask", 10, False, "vap_env.envs.estimation:estimate_reach_state")
    wrong = TaskSpec(
        "bad", "vap_env.sim.tasks:ReachTask", 10, True, "vap_env.envs.estimation:estimate_reach_state"
    )
    with pytest.raises(ValueError, match="has_object=True, its rules class ReachTask says False"):
        wrong.rules_class()
    assert [(s.name, s.max_episode_steps, s.has_object) for s in TASKS.values()] == [
        ("reach", 30, False),
        ("push", 50, True),
    ]


# ----------------------------------------------------------------------------------------- a policy


class HoldStill:
    """A toy policy: it commands no motion, with the gripper at a fixed openness."""

    def __init__(self, env: gym.Env, gripper: float = 1.0) -> None:
        self.action = np.zeros(env.action_space.shape, dtype=np.float32)
        self.action[-1] = 2 * gripper - 1  # the last action entry maps [-1, 1] onto openness [0, 1]

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: object) -> np.ndarray:
        return self.action.copy()


def test_a_policy_kind_is_one_builder_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from vap_env.policies.factory import parse_kwargs

    def build(args: str, env: gym.Env) -> HoldStill:  # args: the text after "still:"
        return HoldStill(env, **parse_kwargs(args, {"gripper": float}))

    monkeypatch.setitem(POLICY_BUILDERS, "still", build)
    env = gym.make(env_id("panda", "reach"), obs_mode="state")
    policy = make_policy("still:gripper=0.25", env)
    obs, info = env.reset(seed=0)
    start = info["commanded_ee_position"].copy()
    for _ in range(3):
        obs, *_, info = env.step(policy.act(obs))
    np.testing.assert_allclose(info["commanded_ee_position"], start, atol=1e-9)
    assert info["commanded_gripper"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="valid kinds: random, scripted, sb3, py, still"):
        make_policy("walk", env)
    env.close()
