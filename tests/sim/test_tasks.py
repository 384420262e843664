"""Task rules: built for the robot's workspace from the task table, and scoring without a scene."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.sim.env import SimEnv
from vap_env.sim.tasks import PushTask, ReachTask
from vap_env.tasks import TASKS, task_spec


@pytest.mark.parametrize("name", list(TASKS))
def test_every_spec_resolves(name):
    spec = task_spec(name)
    cls = spec.rules_class()
    assert cls.has_object == spec.has_object and cls.goal_shape in ("sphere", "disc")
    assert callable(spec.state_estimator()) and spec.expert_class() is not None
    assert spec.scoring().has_object == spec.has_object


def test_reach_goals_fit_the_workspace():
    env = SimEnv(robot="panda", task="reach", obs_mode="state")
    low_z = env.workspace[0][2]
    assert isinstance(env.task, ReachTask)
    assert env.task.z_range == (max(0.05, low_z + 0.02), max(max(0.05, low_z + 0.02), 0.3))
    goals = np.array([env.reset(seed=s)[1]["goal"] for s in range(20)])
    assert goals[:, 2].min() >= env.task.z_range[0] and goals[:, 2].max() <= 0.3
    env.close()


def test_scoring_without_a_scene_matches_the_simulator():
    env = SimEnv(robot="panda", task="push", obs_mode="state")
    env.reset(seed=4)
    _, reward, _, _, info = env.step(np.array([0.3, 0.1, -0.2, -1.0], dtype=np.float32))
    scoring = task_spec("push").scoring()
    assert isinstance(scoring, PushTask) and (scoring.distance_threshold, scoring.near_weight) == (0.05, 0.1)
    cube = info["object_pose"][:3]
    terms = scoring.reward_terms(cube, info["goal"], info["ee_position"])
    assert {k: float(v) for k, v in terms.items()} == {k: info[k] for k in ("reward_dist", "reward_near")}
    assert float(scoring.compute_reward(cube, info["goal"], info)) == pytest.approx(reward)
    assert bool(scoring.is_success(cube, info["goal"])) == info["is_success"]
    with pytest.raises(RuntimeError, match="PushTask was built without a scene"):
        scoring.get_achieved_goal()
    env.close()
