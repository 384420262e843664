"""``as_policy``: names, the ``py:`` kind in its three callable forms, checked actions, and every error."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium import spaces

from vap_env.policies import (
    CheckedPolicy,
    FunctionPolicy,
    PolicyError,
    RandomPolicy,
    ScriptedReachPolicy,
    StackedPolicies,
    as_batch_policy,
    as_policy,
    is_batch_policy,
    make_policy,
    split_named,
)
from vap_env.sim.env import SimEnv

ACTIONS = spaces.Box(-1.0, 1.0, (4,), np.float32)
# What the py: sources read of an env: its spaces (SimEnv-sized, without the simulator)
ENV = SimpleNamespace(action_space=ACTIONS, observation_space=spaces.Box(-5.0, 5.0, (14,), np.float32))
OBS = np.zeros(14, np.float32)

USER_FILE = '''
import numpy as np

THRESHOLD = 3


class Still:
    """A policy class: called with the env (and the spec's arguments)."""

    def __init__(self, env, gripper=1.0):
        self.action = np.zeros(env.action_space.shape, dtype=np.float32)
        self.action[-1] = gripper

    def reset(self, seed=None):
        pass

    def act(self, obs):
        return self.action.copy()


def make(env, gain=1.0):
    """A factory: its first parameter is `env`."""
    return Still(env, gripper=gain)


def towards_zero(obs, scale=0.5):
    """A plain obs -> action function."""
    return np.full(4, -scale, dtype=np.float32)


class NoAct:
    pass
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_policies.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("random", ("random", "random")),
        ("scripted:noise=0.2", ("scripted:noise=0.2", "scripted:noise=0.2")),
        ("scripted:noise=0.2,hesitation=0.1", ("scripted:noise=0.2,hesitation=0.1",) * 2),
        ("mine=scripted:noise=0.2", ("mine", "scripted:noise=0.2")),
        (" mine = scripted ", ("mine", "scripted")),
        ("ppo=sb3:runs/a=b/ppo.zip,algo=PPO", ("ppo", "sb3:runs/a=b/ppo.zip,algo=PPO")),
        ("sb3:runs/a=b/ppo.zip", ("sb3:runs/a=b/ppo.zip",) * 2),
        ("py:pkg.mod:make,gain=2", ("py:pkg.mod:make,gain=2",) * 2),
        ("hand=py:my.py:make,gain=2", ("hand", "py:my.py:make,gain=2")),
        ("a=b=c", ("a", "b=c")),
    ],
)
def test_split_named(spec, expected):
    assert split_named(spec) == expected


@pytest.mark.parametrize("spec", ["=random", "mine=", " = "])
def test_split_named_refuses_empty_parts(spec):
    with pytest.raises(ValueError, match="write NAME=SPEC"):
        split_named(spec)


def test_py_from_a_module():
    policy = as_policy("py:vap_env.policies.random_policy:RandomPolicy,seed=3", ENV)
    assert isinstance(policy.policy, RandomPolicy) and policy.name.startswith("py:vap_env")
    expected = RandomPolicy(ACTIONS, seed=3)
    np.testing.assert_array_equal(policy.act(OBS), expected.act(OBS))


def test_py_from_a_file_in_each_callable_form(user_file):
    still = as_policy(f"py:{user_file}:Still,gripper=0.5", ENV)
    np.testing.assert_array_equal(still.act(OBS), [0, 0, 0, 0.5])
    made = as_policy(f"maker=py:{user_file}:make,gain=-1", ENV)
    assert made.name == "maker" and type(made.policy).__name__ == "Still"
    np.testing.assert_array_equal(made.act(OBS), [0, 0, 0, -1])
    function = as_policy(f"py:{user_file}:towards_zero,scale=0.25", ENV)
    assert isinstance(function.policy, FunctionPolicy)
    function.reset(seed=0)
    np.testing.assert_array_equal(function.act(OBS), np.full(4, -0.25))
    assert function.act(OBS).dtype == np.float32


def test_python_objects():
    class Hold:
        def __init__(self, env=None):
            self.env = env

        def reset(self, seed=None):
            pass

        def act(self, obs):
            return np.zeros(4)

    instance = Hold()
    assert as_policy(instance, ENV).policy is instance and as_policy(instance, ENV).name == "Hold"
    assert as_policy(Hold, ENV, name="held").policy.env is ENV  # a class: called with the env
    assert isinstance(as_policy(lambda env: RandomPolicy(env), ENV).policy, RandomPolicy)  # a factory
    assert isinstance(as_policy(lambda obs: np.zeros(4), ENV).policy, FunctionPolicy)
    checked = as_policy(instance, ENV, name="first")
    assert as_policy(checked, ENV, name="second").policy is instance  # re-named, not checked twice


def test_specs_and_batches_in_a_simulator():
    env = SimEnv(robot="panda", task="reach", obs_mode="both", image_size=32)
    try:
        policy = as_policy("expert=scripted", env)
        assert isinstance(policy, CheckedPolicy) and isinstance(policy.policy, ScriptedReachPolicy)
        assert not is_batch_policy(policy) and policy.name == "expert"
        rows = [env.reset(seed=s)[0] for s in range(3)]
        batch = as_batch_policy("scripted:noise=0.3", env, num_envs=3)
        assert isinstance(batch, StackedPolicies) and len({id(p) for p in batch.policies}) == 3
        batch.reset_batch([0, 1, 2])
        stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        actions = batch.act_batch(stacked)
        singles = [make_policy("scripted:noise=0.3", env) for _ in range(3)]
        for i, single in enumerate(singles):
            single.reset(seed=i)
        np.testing.assert_array_equal(actions, [s.act(r) for s, r in zip(singles, rows, strict=True)])
    finally:
        env.close()


def test_checked_actions():
    def returning(action):
        return as_policy(lambda obs: action, ENV, name="mine")

    with pytest.raises(PolicyError, match=r"policy 'mine': action has shape \(3,\), expected \(4,\)"):
        returning(np.zeros(3)).act(OBS)
    with pytest.raises(PolicyError, match=r"shape \(1, 4\), expected \(4,\).*not a batch"):
        returning(np.zeros((1, 4))).act(OBS)
    with pytest.raises(PolicyError, match=r"policy 'mine': action is not finite: \[ 0. nan  0.  0.\]"):
        returning(np.array([0, np.nan, 0, 0])).act(OBS)
    with pytest.raises(
        PolicyError,
        match=r"policy 'mine': action lies outside the env's action space at \[0\]=1.5, \[3\]=-2: "
        r"bounds low=\[-1.0, -1.0, -1.0, -1.0\] high=\[1.0, 1.0, 1.0, 1.0\]",
    ):
        returning(np.array([1.5, 0, 0, -2])).act(OBS)
    with pytest.raises(PolicyError, match=r"action 'left' is not an array of numbers"):
        returning("left").act(OBS)
    within = returning(np.array([1 + 5e-7, 0, 0, -1 - 5e-7])).act(OBS)  # float slack: clipped, not refused
    np.testing.assert_array_equal(within, [1, 0, 0, -1])
    assert within.dtype == np.float32


def test_a_policy_that_raises():
    def broken(obs):
        return 1 / 0

    with pytest.raises(
        PolicyError, match=r"policy 'broken': act\(\) raised ZeroDivisionError: division by zero"
    ) as e:
        as_policy(broken, ENV).act(OBS)
    assert isinstance(e.value.__cause__, ZeroDivisionError)

    class BadReset:
        def reset(self, seed=None):
            raise RuntimeError("no seeds here")

        def act(self, obs):
            return np.zeros(4)

    with pytest.raises(PolicyError, match=r"reset\(\) raised RuntimeError: no seeds here") as e:
        as_policy(BadReset(), ENV, name="bad").reset(seed=0)
    assert isinstance(e.value.__cause__, RuntimeError)


def test_py_errors(user_file, tmp_path):
    with pytest.raises(
        PolicyError,
        match=r"policy 'py:no_such_mod:make': no module 'no_such_mod': give an "
        r"importable module \(on PYTHONPATH\) or the path of a .py file",
    ):
        as_policy("py:no_such_mod:make", ENV)
    missing = tmp_path / "gone.py"
    with pytest.raises(PolicyError, match=r"no such file .*gone.py.*: give the path of a .py file"):
        as_policy(f"py:{missing}:make", ENV)
    with pytest.raises(PolicyError, match=r"my_policies.py has no 'Nope'; it defines: .*Still.*make"):
        as_policy(f"py:{user_file}:Nope", ENV)
    with pytest.raises(
        PolicyError,
        match=r"3 \(a int\) is not a policy; give a Policy class, a factory "
        r"\(env\) -> Policy, a policy object \(reset/act\), or a function obs -> action",
    ):
        as_policy(f"py:{user_file}:THRESHOLD", ENV)
    with pytest.raises(PolicyError, match=r"class NoAct has no act\(\) method, so it is not a policy"):
        as_policy(f"py:{user_file}:NoAct", ENV)
    with pytest.raises(PolicyError, match=r"expected py:MODULE:NAME or py:path/to/file.py:NAME"):
        as_policy("py:vap_env.policies", ENV)
    with pytest.raises(PolicyError, match=r"factory make\(env, \*\*\{'speed': 2\}\) raised TypeError"):
        as_policy(f"py:{user_file}:make,speed=2", ENV)
    with pytest.raises(
        PolicyError,
        match=r"policy '<lambda>': factory <lambda> returned 3, which has no reset\(\) and act\(\)",
    ):
        as_policy(lambda env: 3, ENV)
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('needs torch 9')\n")
    with pytest.raises(PolicyError, match=r"running .*broken.py.* raised ImportError: needs torch 9"):
        as_policy(f"py:{broken}:make", ENV)
