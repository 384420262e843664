"""Gymnasium ids for the simulator envs: ``vap_env/<Robot><Task>-Sim-v0`` for every arm in ``robots/`` and
every task in :data:`vap_env.tasks.TASKS` (whose specs give the time limits).

Light on purpose (no PyBullet import): ``import vap_env`` runs it, and the entry point is a string, so the
env module loads only when an env is made.
"""

from __future__ import annotations

import gymnasium as gym

from vap_env.description import list_robots, load_description
from vap_env.tasks import TASKS


def arm_robots() -> list[str]:
    """Robots in ``robots/`` that have a simulated body (kind ``"arm"``); hands have none."""
    return [name for name in list_robots() if load_description(name).kind == "arm"]


def env_id(robot: str, task: str) -> str:
    """``("kuka_iiwa", "push")`` -> ``"vap_env/KukaIiwaPush-Sim-v0"``."""
    camel = "".join(part.capitalize() for part in robot.split("_"))
    return f"vap_env/{camel}{task.capitalize()}-Sim-v0"


def register_sim_envs() -> list[str]:
    """Register one id per (arm robot, task) and return the ids; calling it again keeps known ids."""
    ids = []
    for robot in arm_robots():
        for task, spec in TASKS.items():
            name = env_id(robot, task)
            if name not in gym.registry:
                gym.register(
                    name,
                    entry_point="vap_env.sim.env:SimEnv",
                    max_episode_steps=spec.max_episode_steps,
                    kwargs={"robot": robot, "task": task},
                )
            ids.append(name)
    return ids


SIM_ENV_IDS: list[str] = register_sim_envs()
