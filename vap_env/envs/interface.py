"""What a policy may know about an env beyond its spaces: :class:`EnvInterface`, the same in both worlds.

``SimEnv``, ``WorldModelEnv`` and ``WorldModelVectorEnv`` expose one as ``env.unwrapped.interface``; the
scripted experts, recorders and evaluation read the task, the action mapping and the state layout there
rather than from attributes copied onto every env. Light on purpose (numpy only): the simulator imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EnvInterface"]


@dataclass(frozen=True, eq=False)  # eq=False: the workspace arrays have no single truth value
class EnvInterface:
    """The task, action mapping and state layout of an env, as its policies read them.

    Args:
        task_name: The task (``"push"``, ``"reach"``).
        action_mode: ``"ee_delta"`` or ``"joint_delta"`` (see :mod:`vap_env.control`).
        state_layout: Name -> slice of the state observation (``joints``, ``ee_position``, ``gripper``,
            ``object_position`` for tasks with an object, ``goal``; ``vap_env.sim.env.state_layout``).
        workspace: ``(low, high)``, each ``(3,)``: the box the commanded TCP stays in (m, world frame).
        max_ee_step: Metres of TCP motion per unit of ``ee_delta`` action.
        max_joint_step: Radians per unit of ``joint_delta`` action.
    """

    task_name: str
    action_mode: str
    state_layout: Mapping[str, slice]
    workspace: tuple[np.ndarray, np.ndarray]
    max_ee_step: float
    max_joint_step: float

    @classmethod
    def of(cls, env: Any) -> EnvInterface:
        """The interface of ``env`` (a Gymnasium env, possibly wrapped, or a vector env).

        Raises:
            TypeError: ``env`` has no ``interface`` (it is not a vap-env environment).
        """
        base = getattr(env, "unwrapped", env)
        interface = getattr(base, "interface", None)
        if not isinstance(interface, EnvInterface):
            raise TypeError(
                f"{type(base).__name__} has no `interface` (an EnvInterface): the scripted experts and "
                "evaluation need a vap-env env (SimEnv, WorldModelEnv, WorldModelVectorEnv)"
            )
        return interface
