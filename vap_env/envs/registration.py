"""Gymnasium ids for the world-model envs: ``vap_env/<Robot><Task>-WM-v0`` for every arm in ``robots/``.

Light on purpose (no torch import): ``import vap_env`` runs it, and the entry points are strings, so the
model code loads only when an env is made. Every id takes the world model as ``model=``:
``gym.make("vap_env/PandaPush-WM-v0", model=DIR)`` or, batched,
``gym.make_vec("vap_env/PandaPush-WM-v0", num_envs=8, vectorization_mode="vector_entry_point", model=DIR)``.
"""

from __future__ import annotations

import gymnasium as gym

from vap_env.sim.registration import arm_robots, env_id
from vap_env.tasks import TASKS


def wm_env_id(robot: str, task: str) -> str:
    """``("kuka_iiwa", "push")`` -> ``"vap_env/KukaIiwaPush-WM-v0"`` (the sim id's CamelCase, ``-WM-v0``)."""
    return env_id(robot, task).removesuffix("-Sim-v0") + "-WM-v0"


def register_world_model_envs() -> list[str]:
    """Register one id per (arm robot, task) and return the ids; calling it again keeps known ids.

    Time limits are the task specs' (``vap_env.tasks.TASKS``), as for the simulator: a ``TimeLimit`` for
    ``gym.make``, and ``max_episode_steps=`` of :class:`~vap_env.envs.vector_env.WorldModelVectorEnv` for
    ``gym.make_vec``.
    """
    ids = []
    for robot in arm_robots():
        for task, spec in TASKS.items():
            name = wm_env_id(robot, task)
            if name not in gym.registry:
                gym.register(
                    name,
                    entry_point="vap_env.envs.world_model_env:WorldModelEnv",
                    vector_entry_point="vap_env.envs.vector_env:WorldModelVectorEnv",
                    max_episode_steps=spec.max_episode_steps,
                    kwargs={"robot": robot, "task": task},
                )
            ids.append(name)
    return ids


WM_ENV_IDS: list[str] = register_world_model_envs()
