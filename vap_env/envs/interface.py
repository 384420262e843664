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

__all__ = ["EnvInterface", "InterfaceAttributes"]


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

        An object without ``interface`` that carries the same names as attributes (``task_name``,
        ``action_mode``, ``state_layout``, ``workspace``, ``max_ee_step``; e.g. a view of one sub-env that
        predates the interface) is read through those.
        """
        base = getattr(env, "unwrapped", env)
        interface = getattr(base, "interface", None)
        if isinstance(interface, EnvInterface):
            return interface
        return cls(
            task_name=base.task_name,
            action_mode=base.action_mode,
            state_layout=dict(base.state_layout),
            workspace=tuple(base.workspace),
            max_ee_step=float(base.max_ee_step),
            max_joint_step=float(getattr(base, "max_joint_step", np.nan)),  # unknown to such views
        )


class InterfaceAttributes:
    """Read-only aliases of ``self.interface`` fields under the names the envs carried before it existed.

    Kept for readers outside :mod:`vap_env.envs` that still use them (``vap_env.evaluate.runner``'s
    sub-env view); new code reads ``env.unwrapped.interface``.
    """

    interface: EnvInterface

    @property
    def task_name(self) -> str:
        return self.interface.task_name

    @property
    def action_mode(self) -> str:
        return self.interface.action_mode

    @property
    def state_layout(self) -> Mapping[str, slice]:
        return self.interface.state_layout

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray]:
        return self.interface.workspace

    @property
    def max_ee_step(self) -> float:
        return self.interface.max_ee_step
