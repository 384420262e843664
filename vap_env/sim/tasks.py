"""Task rules over a :class:`~vap_env.sim.scene.TabletopScene`: what is drawn at reset, what counts as success,
and the reward. The tasks themselves are listed in :data:`vap_env.tasks.TASKS`, whose ``rules`` name these
classes.

Following panda-gym, a task reads and writes the scene by body name and gets the tool centre point (TCP)
from a callable, so it never needs to know the robot. Rewards and success are pure functions of
``(achieved_goal, desired_goal, ee_position)``, vectorised over leading batch dimensions, so the same code
scores imagined rollouts where the cube position is estimated from generated frames: :meth:`Task.scoring`
builds a task without a scene for that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from vap_env.sim.scene import TabletopScene

__all__ = ["PushTask", "ReachTask", "Task", "distance"]

_T = TypeVar("_T", bound="Task")
_Reach = TypeVar("_Reach", bound="ReachTask")
_Push = TypeVar("_Push", bound="PushTask")


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis."""
    return np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), axis=-1)


class Task(ABC):
    """A goal-reaching task in a tabletop scene.

    Args:
        scene: The scene whose bodies the task places and reads; ``None`` for a scene-free task that only
            scores (:meth:`scoring`).
        get_ee_position: Returns the robot's current TCP position (3,); ``None`` without a scene.
        distance_threshold: Success radius (m) around the goal.

    Attributes:
        name: Task name used in env ids (``"reach"``, ``"push"``).
        goal_shape: Goal marker the scene should build (``"sphere"`` or ``"disc"``).
        has_object: Whether the cube takes part (its position is then part of the observation).
    """

    name: str = ""
    goal_shape: str = "sphere"
    has_object: bool = False

    def __init__(
        self,
        scene: TabletopScene | None,
        get_ee_position: Callable[[], np.ndarray] | None,
        distance_threshold: float,
    ) -> None:
        if distance_threshold <= 0:
            raise ValueError(f"`distance_threshold` must be positive, got {distance_threshold}")
        self._scene = scene
        self._get_ee_position = get_ee_position
        self.distance_threshold = float(distance_threshold)
        self.goal = np.zeros(3)

    @classmethod
    @abstractmethod
    def for_workspace(
        cls: type[_T],
        scene: TabletopScene,
        get_ee_position: Callable[[], np.ndarray],
        workspace: tuple[np.ndarray, np.ndarray],
    ) -> _T:
        """The task as the simulator builds it, for a robot whose commanded TCP stays in the box
        ``workspace`` (low, high): the draws fit what the robot can reach."""

    @classmethod
    @abstractmethod
    def scoring(cls: type[_T]) -> _T:
        """The task without a scene, with the simulator's parameters: only the scene-free part works
        (``is_success``, ``reward_terms``, ``compute_reward``, ``has_object``), e.g. to score imagination."""

    @property
    def scene(self) -> TabletopScene:
        """The scene the task places and reads (a scene-free task has none)."""
        if self._scene is None:
            raise RuntimeError(f"{type(self).__name__} was built without a scene (scoring only)")
        return self._scene

    def get_ee_position(self) -> np.ndarray:
        """(3,) the robot's current TCP position."""
        if self._get_ee_position is None:
            raise RuntimeError(f"{type(self).__name__} was built without a robot (scoring only)")
        return self._get_ee_position()

    @abstractmethod
    def reset(self, np_random: np.random.Generator) -> None:
        """Draw a new goal (and object pose) from ``np_random`` and place the bodies."""

    @abstractmethod
    def get_obs(self) -> np.ndarray:
        """Task part of the state observation: (3,) object position, or (0,) without an object."""

    @abstractmethod
    def get_achieved_goal(self) -> np.ndarray:
        """(3,) the point that must reach the goal (TCP or object position)."""

    def get_goal(self) -> np.ndarray:
        """(3,) goal position."""
        return self.goal.copy()

    def get_object_pose(self) -> np.ndarray:
        """(7,) the object's position and quaternion xyzw (tasks with an object)."""
        return np.concatenate(self.scene.get_base_pose("object"))

    def is_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Boolean (...,): within ``distance_threshold`` of the goal."""
        return np.asarray(distance(achieved_goal, desired_goal) < self.distance_threshold)

    @abstractmethod
    def reward_terms(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, ee_position: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Named reward parts (Gymnasium's ``reward_*`` info keys); the reward is their sum."""

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: dict) -> np.ndarray:
        """Dense reward (...,); ``info`` must hold ``"ee_position"`` (the TCP, for shaping terms)."""
        terms = self.reward_terms(achieved_goal, desired_goal, info["ee_position"])
        return sum(terms.values())


class ReachTask(Task):
    """Move the TCP to a goal point above the table.

    Goals are uniform over the description's ``workspace_x`` x ``workspace_y`` and ``z_range``
    (:meth:`for_workspace`: from 2 cm above the workspace floor, at least 5 cm, to 30 cm).
    Success: TCP within ``distance_threshold`` (3 cm) of the goal. Reward: ``reward_dist`` = -distance (m).

    Args:
        scene: The scene (built with a sphere goal marker); ``None`` for scoring only.
        get_ee_position: Returns the TCP position (3,).
        z_range: (min, max) goal height above the table (m).
        distance_threshold: Success radius (m).
    """

    name = "reach"
    goal_shape = "sphere"
    has_object = False

    def __init__(
        self,
        scene: TabletopScene | None,
        get_ee_position: Callable[[], np.ndarray] | None,
        z_range: tuple[float, float] = (0.05, 0.3),
        distance_threshold: float = 0.03,
    ) -> None:
        super().__init__(scene, get_ee_position, distance_threshold)
        if not 0 <= z_range[0] <= z_range[1]:
            raise ValueError(f"`z_range` must be (min, max) with 0 <= min <= max, got {z_range}")
        self.z_range = (float(z_range[0]), float(z_range[1]))

    @classmethod
    def for_workspace(
        cls: type[_Reach],
        scene: TabletopScene,
        get_ee_position: Callable[[], np.ndarray],
        workspace: tuple[np.ndarray, np.ndarray],
    ) -> _Reach:
        """Goals from 2 cm above the floor of the commanded TCP's box (at least 5 cm) up to 30 cm, so the
        TCP can reach every goal."""
        z_lo = max(0.05, workspace[0][2] + 0.02)
        return cls(scene, get_ee_position, z_range=(z_lo, max(z_lo, 0.3)))

    @classmethod
    def scoring(cls: type[_Reach]) -> _Reach:
        return cls(None, None)

    def reset(self, np_random: np.random.Generator) -> None:
        d = self.scene.description
        self.goal = np.array(
            [
                np_random.uniform(*d.workspace_x),
                np_random.uniform(*d.workspace_y),
                np_random.uniform(*self.z_range),
            ]
        )
        self.scene.set_base_pose("goal", self.goal)

    def get_obs(self) -> np.ndarray:
        return np.zeros(0)

    def get_achieved_goal(self) -> np.ndarray:
        return np.asarray(self.get_ee_position(), dtype=np.float64)

    def reward_terms(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, ee_position: np.ndarray
    ) -> dict[str, np.ndarray]:
        return {"reward_dist": -distance(achieved_goal, desired_goal)}


class PushTask(Task):
    """Push the red cube across the table onto a goal on the table.

    The cube (random yaw) and the goal are uniform over the description's workspace, at least
    ``min_goal_distance`` apart. Success: cube centre within ``distance_threshold`` = 5 cm (one cube edge)
    of the goal, measured in 3D with the goal at cube-centre height. Reward:
    ``reward_dist`` = -distance(cube, goal) plus ``reward_near`` = -``near_weight`` * distance(TCP, cube),
    the Gymnasium Pusher shaping that keeps an RL agent near the cube.

    Args:
        scene: The scene (built with a disc goal marker); ``None`` for scoring only.
        get_ee_position: Returns the TCP position (3,).
        distance_threshold: Success radius (m).
        min_goal_distance: Minimum cube-goal distance at reset (m).
        near_weight: Weight of the TCP-to-cube shaping term (0 disables it).
    """

    name = "push"
    goal_shape = "disc"
    has_object = True

    def __init__(
        self,
        scene: TabletopScene | None,
        get_ee_position: Callable[[], np.ndarray] | None,
        distance_threshold: float = 0.05,
        min_goal_distance: float = 0.1,
        near_weight: float = 0.1,
    ) -> None:
        super().__init__(scene, get_ee_position, distance_threshold)
        if min_goal_distance <= distance_threshold:
            raise ValueError(
                f"`min_goal_distance` must exceed `distance_threshold` ({distance_threshold}), "
                f"got {min_goal_distance}"
            )
        self.min_goal_distance = float(min_goal_distance)
        self.near_weight = float(near_weight)

    @classmethod
    def for_workspace(
        cls: type[_Push],
        scene: TabletopScene,
        get_ee_position: Callable[[], np.ndarray],
        workspace: tuple[np.ndarray, np.ndarray],
    ) -> _Push:
        return cls(scene, get_ee_position)  # cube and goal are drawn over the description's workspace

    @classmethod
    def scoring(cls: type[_Push]) -> _Push:
        return cls(None, None)

    def _sample_xy(self, np_random: np.random.Generator) -> np.ndarray:
        d = self.scene.description
        return np.array([np_random.uniform(*d.workspace_x), np_random.uniform(*d.workspace_y)])

    def reset(self, np_random: np.random.Generator) -> None:
        h = self.scene.cube_size / 2
        cube_xy = self._sample_xy(np_random)
        yaw = np_random.uniform(-np.pi / 4, np.pi / 4)  # a cube's yaw is only defined modulo 90 degrees
        # Rejection sampling always terminates quickly: the workspace is far larger than the exclusion disc.
        goal_xy = self._sample_xy(np_random)
        while np.linalg.norm(goal_xy - cube_xy) < self.min_goal_distance:
            goal_xy = self._sample_xy(np_random)
        self.goal = np.array([goal_xy[0], goal_xy[1], h])
        self.scene.set_base_pose("object", (cube_xy[0], cube_xy[1], h), _yaw_quaternion(yaw))
        self.scene.set_base_pose("goal", (goal_xy[0], goal_xy[1], 0.001))

    def get_obs(self) -> np.ndarray:
        return self.scene.get_base_position("object")

    def get_achieved_goal(self) -> np.ndarray:
        return self.scene.get_base_position("object")

    def reward_terms(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, ee_position: np.ndarray
    ) -> dict[str, np.ndarray]:
        return {
            "reward_dist": -distance(achieved_goal, desired_goal),
            "reward_near": -self.near_weight * distance(ee_position, achieved_goal),
        }


def _yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2)))
