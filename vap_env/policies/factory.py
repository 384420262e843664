"""Build a policy from a short text spec, for command lines and evaluation sweeps.

Specs are ``KIND`` or ``KIND:ARGS``: ``random``, ``random:seed=3``, ``scripted`` (the env task's expert,
from its :class:`~vap_env.tasks.TaskSpec`), ``scripted:noise=0.2,hesitation=0.1,seed=0``, and a person's own
policies: ``sb3:PATH.zip[,algo=PPO,deterministic=false]`` (a stable-baselines3 checkpoint,
:mod:`vap_env.policies.sb3`) and ``py:MODULE:NAME`` or ``py:FILE.py:NAME[,KEY=VALUE...]`` (Python code,
:mod:`vap_env.policies.sources`). New kinds register a builder in ``POLICY_BUILDERS`` (a function
``(args: str, env) -> Policy``; ``args`` is the text after the colon, ``""`` if none).
:func:`~vap_env.policies.sources.as_policy` takes a spec (with an optional ``NAME=``) or a Python object and
checks the policy's actions; ``make_policy`` builds from a bare spec and checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from vap_env.envs.interface import EnvInterface
from vap_env.policies.base import Policy
from vap_env.policies.random_policy import RandomPolicy
from vap_env.policies.sb3 import load_sb3
from vap_env.policies.sources import load_python
from vap_env.tasks import TASKS


def parse_kwargs(args: str, allowed: dict[str, type]) -> dict:
    """``"noise=0.2,seed=3"`` -> ``{"noise": 0.2, "seed": 3}``, each value read as its type in ``allowed``."""
    out = {}
    for item in filter(None, (s.strip() for s in args.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            keys = ", ".join(allowed)
            raise ValueError(f"bad policy argument {item!r}; expected KEY=VALUE with KEY one of: {keys}")
        try:
            out[key] = allowed[key](value.strip())
        except ValueError as e:
            raise ValueError(f"policy argument {key!r}: {value!r} is not a {allowed[key].__name__}") from e
    return out


def boolean(text: str) -> bool:
    """``"true"``/``"false"`` (also ``1``/``0``, ``yes``/``no``, any case) as a ``bool``, for :func:`parse_kwargs`."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise ValueError(f"{text!r} is not true or false")
    return value


def _random(args: str, env: gym.Env) -> Policy:
    return RandomPolicy(env.action_space, **parse_kwargs(args, {"seed": int}))


def _scripted(args: str, env: gym.Env) -> Policy:
    task = EnvInterface.of(env).task_name
    spec = TASKS.get(task) if isinstance(task, str) else None
    expert = spec.expert_class() if spec is not None else None
    if expert is None:  # the expert is the task spec's
        with_experts = ", ".join(name for name, other in TASKS.items() if other.expert is not None)
        raise ValueError(f"no scripted expert for task {task!r}; experts exist for: {with_experts}")
    allowed = getattr(expert, "SPEC_ARGS", {"noise": float, "hesitation": float, "seed": int})
    return expert(env, **parse_kwargs(args, allowed))


POLICY_BUILDERS: dict[str, Callable[[str, gym.Env], Policy]] = {
    "random": _random,
    "scripted": _scripted,
    "sb3": load_sb3,
    "py": load_python,
}


def make_policy(spec: str, env: gym.Env) -> Policy:
    """The policy that ``spec`` names, for ``env``.

    Args:
        spec: ``KIND`` or ``KIND:ARGS`` (see the module docstring).
        env: The env the policy acts in (its spaces and, for experts, ``state_layout`` and ``task_name``).

    Raises:
        ValueError: unknown kind (the message lists the valid ones) or bad arguments.
        PolicyError: an ``sb3:`` or ``py:`` source that cannot be loaded (a ``ValueError`` too).
    """
    kind, _, args = spec.partition(":")
    kind = kind.strip()
    if kind not in POLICY_BUILDERS:
        valid = ", ".join(POLICY_BUILDERS)
        raise ValueError(f"unknown policy kind {kind!r} in spec {spec!r}; valid kinds: {valid}")
    return POLICY_BUILDERS[kind](args, env)
