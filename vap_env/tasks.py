"""The task table: every task, with everything each part of vap-env needs to know about it, in one place.

:data:`TASKS` is the only list of tasks. Registration reads the episode lengths from it, the simulator its
rules, the world-model envs its rules and state estimator, ``make_policy("scripted")`` its expert and
evaluation whether it has an object. A new task is one :class:`TaskSpec` entry (plus a test).

Import-light on purpose: ``import vap_env`` registers the env ids from this table, so it imports neither
PyBullet, OpenCV nor torch. The rules, estimator and expert are ``"module:attr"`` references, resolved (and
cached) on first use, like Gymnasium entry points.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vap_env.envs.estimation import TaskStateEstimator
    from vap_env.sim.tasks import Task


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: The task's name (env ids ``vap_env/<Robot><Name>-Sim-v0``, ``task=`` arguments).
        rules: ``"module:Class"`` of its :class:`~vap_env.sim.tasks.Task` subclass: what reset draws, what
            counts as success, the reward terms (:meth:`rules_class`, :meth:`make_rules`, :meth:`scoring`).
        max_episode_steps: Time limit of its registered envs (simulator and world model).
        has_object: Whether the cube takes part (its position is then part of the state observation, and
            is estimated from frames in imagination); must match the rules class's ``has_object``.
        estimator: ``"module:function"`` reading the task state from a frame in imagination, with the
            signature of :func:`~vap_env.envs.estimation.estimate_reach_state` (:meth:`state_estimator`).
        expert: ``"module:Class"`` of its scripted expert policy, built as ``Class(env, noise=...,
            hesitation=..., seed=...)`` by ``make_policy("scripted")``; ``None``: the task has none.
        policy_family: The policy specs ``vap-env evaluate`` runs on the task by default: a family whose
            simulator outcomes a faithful world model must reproduce and rank (see :data:`GRADED_POLICIES`
            and :data:`CONTACT_POLICIES`).
    """

    name: str
    rules: str
    max_episode_steps: int
    has_object: bool
    estimator: str
    expert: str | None = None
    policy_family: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a task's `name` must be non-empty")
        if self.max_episode_steps < 1:
            raise ValueError(
                f"task {self.name!r}: `max_episode_steps` must be >= 1, got {self.max_episode_steps}"
            )
        for field in ("rules", "estimator", "expert"):
            ref = getattr(self, field)
            if (ref is not None or field != "expert") and not _is_reference(ref):
                raise ValueError(f"task {self.name!r}: `{field}` must be a 'module:attr' string, got {ref!r}")

    def rules_class(self) -> type[Task]:
        """The task's :class:`~vap_env.sim.tasks.Task` subclass (imports it on first use).

        Raises:
            ValueError: If it is not a ``Task`` subclass or its ``has_object`` disagrees with this spec's.
        """
        from vap_env.sim.tasks import Task

        cls = resolve(self.rules)
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ValueError(
                f"task {self.name!r}: `rules` {self.rules!r} is not a vap_env.sim.tasks.Task subclass"
            )
        if cls.has_object != self.has_object:
            raise ValueError(
                f"task {self.name!r}: the spec says has_object={self.has_object}, its rules class "
                f"{cls.__name__} says {cls.has_object}"
            )
        return cls

    def make_rules(self, scene: Any, get_ee_position: Callable[[], Any], workspace: tuple[Any, Any]) -> Task:
        """The task in ``scene`` for a robot whose commanded TCP stays in the box ``workspace`` (low, high)."""
        return self.rules_class().for_workspace(scene, get_ee_position, workspace)

    def scoring(self) -> Task:
        """The task's success and reward code without a scene (``is_success``, ``reward_terms``,
        ``compute_reward`` and ``has_object``; the simulator's thresholds and weights), for imagination."""
        return self.rules_class().scoring()

    def state_estimator(self) -> TaskStateEstimator:
        """The function that reads this task's state from a frame (imports it on first use)."""
        return resolve(self.estimator)

    def expert_class(self) -> type | None:
        """The scripted expert's class, or ``None`` if the task has no expert (imports it on first use)."""
        return None if self.expert is None else resolve(self.expert)


def _is_reference(ref: Any) -> bool:
    if not isinstance(ref, str):
        return False
    module, sep, attr = ref.partition(":")
    return bool(module and sep and attr)


@functools.cache
def resolve(ref: str) -> Any:
    """The object a ``"module:attr"`` reference names (``attr`` may be dotted), imported on first use.

    Raises:
        ValueError: If the module or the attribute does not exist.
    """
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot resolve {ref!r}: {e}") from e
    return obj


GRADED_POLICIES = (
    "scripted:noise=0",
    "scripted:noise=0.3,hesitation=0.1",
    "scripted:noise=0.6,hesitation=0.2",
    "scripted:noise=1.0,hesitation=0.3",
    "random",
)
"""A graded family, from the clean expert down to random actions: what ranking needs."""

CONTACT_POLICIES = ("scripted:aim=180", "scripted:hover=0.08")
"""Push policies that move or pass the cube without solving the task: a clean push away from the goal and a
pass above the cube. A world model that counts any contact as success, or shows the cube moving wherever the
gripper goes, scores them as solving the task; the simulator does not (0 of 25 and 0 of 20 recorded Panda
episodes; the first moves the cube 17.7 cm on average, the second not at all: experiment 3 of
docs/results/interaction_experiments.md)."""

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        # Episode lengths: the scripted experts finish reach within 15 steps and push within 50 (Panda, 50 seeds).
        TaskSpec(
            name="reach",
            rules="vap_env.sim.tasks:ReachTask",
            max_episode_steps=30,
            has_object=False,
            estimator="vap_env.envs.estimation:estimate_reach_state",
            expert="vap_env.policies.scripted:ScriptedReachPolicy",
            policy_family=GRADED_POLICIES,
        ),
        TaskSpec(
            name="push",
            rules="vap_env.sim.tasks:PushTask",
            max_episode_steps=50,
            has_object=True,
            estimator="vap_env.envs.estimation:estimate_push_state",
            expert="vap_env.policies.scripted:ScriptedPushPolicy",
            policy_family=GRADED_POLICIES + CONTACT_POLICIES,
        ),
    )
}
"""Tasks by name, the one list of them (see :class:`TaskSpec`)."""


def task_spec(name: Any) -> TaskSpec:
    """The :class:`TaskSpec` called ``name``.

    Raises:
        ValueError: If there is none; the message names the known tasks.
    """
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
