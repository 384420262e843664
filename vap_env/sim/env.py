"""The simulator baseline: a Gymnasium env over PyBullet physics, with the world-model env's interface."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vap_env.camera import Camera, ViewpointSampler
from vap_env.control import ActionController, RobotCommand
from vap_env.description import RobotDescription, list_robots, load_description
from vap_env.envs.interface import EnvInterface
from vap_env.kinematics import Robot
from vap_env.modes import ACTION_MODES, CAMERA_MODES, OBS_MODES
from vap_env.prompts import PROMPT_KINDS, ActionPrompter
from vap_env.sim.registration import arm_robots
from vap_env.sim.scene import SceneRender, TabletopScene
from vap_env.sim.tasks import Task
from vap_env.tasks import TASKS, task_spec

PHYSICS_HZ = 240
_DEFAULT_ARM_FORCE = 200.0  # N m, for model files that give no effort limit
_DEFAULT_GRIPPER_FORCE = 20.0  # N
_POSITION_BOUND = 5.0  # m, observation bound of positions (the floor is 6 m across)


class SimEnv(gym.Env):
    """
    ## Description

    A robot arm on a table, simulated with PyBullet at 240 Hz, with a red 5 cm cube and a green goal
    marker. This is the physics baseline for vap-env's world-model environments: the same robot
    descriptions, action space, observation layout, reward code and visual action prompt, with ground-truth
    dynamics and rendering. Tasks: ``reach`` (move the tool centre point, TCP, to a green sphere) and
    ``push`` (push the cube onto a green disc on the table).

    Each step sets a *commanded* robot state from the action; the arm tracks it with position control over
    ``substeps`` physics steps (20 by default: a 12 Hz control rate), and the *achieved* state is measured
    afterwards. Both are reported in ``info``; the visual action prompt (``info["prompt"]``) is rendered from
    the commanded state, because the achieved one already shows what contact did.

    The env does image work only when something asks for it: the camera image is rendered only for image
    observations (``obs_mode="image"`` or ``"both"``), :meth:`render` and :meth:`frame`; the prompt is drawn
    every step unless ``info_prompt=False``. A state-only env with ``info_prompt=False`` runs physics,
    inverse kinematics and the state readout only (the fastest setting, for RL on states). The option only
    decides what is drawn: the same seed and actions give the same states, rewards and images either way.

    ## Action Space

    ``action_mode="ee_delta"`` (default): ``Box(-1, 1, (4,), float32)`` = (dx, dy, dz, gripper). The TCP
    target moves by ``max_ee_step`` (2 cm) times (dx, dy, dz), clipped to the box ``self.workspace``
    (the robot's object workspace plus a margin, above a floor that keeps the fingers off the table); the
    gripper points down and inverse kinematics from the previous command gives the commanded joints. The
    gripper entry sets the commanded openness ``(a + 1) / 2`` (0 closed, 1 open).

    ``action_mode="joint_delta"``: ``Box(-1, 1, (J + 1,), float32)``: each arm joint target moves by
    ``max_joint_step`` (0.05 rad) times its entry, within the joint limits; the last entry is the gripper.

    Actions outside [-1, 1] are clipped (Gymnasium leaves this to the env). Non-finite actions and
    actions of the wrong shape raise ``ValueError``. All of this is :class:`vap_env.control.ActionController`,
    shared with the world-model envs.

    ## Observation Space

    ``obs_mode="image"`` (default): ``Box(0, 255, (H, W, 3), uint8)``, the camera image.
    ``obs_mode="state"``: ``Box(low, high, (N,), float32)``, laid out as ``self.state_layout`` says (bounds:
    joints within +-4 pi, positions within +-5 m, gripper in [0, 1]):

    | slice | size | content |
    |---|---|---|
    | ``joints`` | J | measured arm joint positions (rad) |
    | ``ee_position`` | 3 | measured TCP position (m, world frame) |
    | ``gripper`` | 1 | measured gripper openness in [0, 1] |
    | ``object_position`` | 3 | cube centre (m), ``push`` only |
    | ``goal`` | 3 | goal position (m) |

    N = J + 10 for ``push`` and J + 7 for ``reach``. ``obs_mode="both"``: ``Dict(image=..., state=...)``.
    State-only envs never render (fast); :meth:`render` renders on demand.

    ## Rewards

    Dense, from the task (``vap_env.sim.tasks``), with the parts in ``info``: ``reach``: ``reward_dist`` =
    -|TCP - goal|. ``push``: ``reward_dist`` = -|cube - goal| and ``reward_near`` = -0.1 |TCP - cube|.

    ## Starting State

    The arm at the description's home pose with the gripper open; for ``push`` the cube (random yaw) and
    the goal uniform over the description's ``workspace_x`` x ``workspace_y``, at least 10 cm apart; for
    ``reach`` the goal uniform over that area at 5-30 cm height. With ``camera="random"`` the viewpoint
    is drawn around the description's default camera. Everything is drawn from ``self.np_random``:
    the same seed gives the same episode, whatever ran before. ``reset`` takes no ``options``.

    ## Episode End

    Terminated on success (``reach``: TCP within 3 cm of the goal; ``push``: cube within 5 cm). Truncated
    by the ``TimeLimit`` of the registered ids (``vap_env/<Robot><Task>-Sim-v0``): 30 steps for ``reach``,
    50 for ``push`` (the scripted experts need at most 15 and about 45).

    ## Arguments

    - ``robot``: an arm in ``robots/`` (``"panda"``, ``"kuka_iiwa"``, ``"xarm6"``, ...), the path of a
      description ``.toml`` or a :class:`~vap_env.description.RobotDescription`.
    - ``task``: a task of :data:`vap_env.tasks.TASKS`: ``"push"`` or ``"reach"``.
    - ``action_mode``: ``"ee_delta"`` or ``"joint_delta"``.
    - ``obs_mode``: ``"image"``, ``"state"`` or ``"both"``.
    - ``image_size``: side of the square images (observation, render, prompt and masks).
    - ``camera``: ``"fixed"`` (the description's default), ``"random"`` (drawn at each reset) or a
      :class:`~vap_env.camera.Camera` (resized to ``image_size`` if its size differs).
    - ``prompt``: the visual action prompt kind in ``info["prompt"]`` (see ``vap_env.prompts``).
    - ``info_prompt``: whether ``info`` carries ``"prompt"`` (default ``True``). ``False`` leaves the key out
      and skips drawing it, for callers that never read it (state-only RL; recording, which redraws prompts
      from the commanded state later). ``True`` or ``False`` only; anything else raises ``ValueError``.
    - ``render_mode``: ``None`` or ``"rgb_array"``.
    - ``substeps``: physics steps per env step.
    - ``max_ee_step`` (m) and ``max_joint_step`` (rad): the action scales.

    ## Info

    ``commanded_joints`` (J,), ``commanded_gripper``, ``commanded_ee_position`` (3,), ``joints`` (J,),
    ``gripper``, ``ee_position`` (3,), ``goal`` (3,), ``object_pose`` (7,: position, quaternion xyzw;
    ``push`` only), ``is_success``, the ``reward_*`` parts, ``prompt`` (unless ``info_prompt=False``) and,
    whenever the step rendered an image (image observations), ``robot_mask`` and ``object_mask`` ((H, W)
    bool; state-only envs render them on demand with :meth:`frame`).

    Public attributes for scripted policies and recorders: ``interface`` (what policies read, an
    :class:`~vap_env.envs.interface.EnvInterface` as in the world-model envs), ``camera`` (this episode's
    :class:`~vap_env.camera.Camera`), ``robot`` (the kinematic :class:`~vap_env.kinematics.Robot`),
    ``state_layout`` (name -> slice of the state vector), ``workspace`` ((low, high) box of the commanded
    TCP), ``controller`` (the :class:`~vap_env.control.ActionController`; ``command`` is its commanded
    state), ``desc``, ``task_name``, ``task`` and ``scene``.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": PHYSICS_HZ // 20}

    def __init__(
        self,
        robot: str | RobotDescription = "panda",
        task: str = "push",
        action_mode: str = "ee_delta",
        obs_mode: str = "image",
        image_size: int = 64,
        camera: str | Camera = "fixed",
        prompt: str = "skeleton",
        render_mode: str | None = None,
        substeps: int = 20,
        max_ee_step: float = 0.02,
        max_joint_step: float = 0.05,
        info_prompt: bool = True,
    ) -> None:
        self._validate(task, action_mode, obs_mode, image_size, camera, prompt, render_mode, substeps)
        if not isinstance(info_prompt, bool | np.bool_):
            raise ValueError(f"`info_prompt` must be True or False, got {info_prompt!r}")
        self.info_prompt = bool(info_prompt)
        self.desc = self._load_robot(robot)
        self.task_name, self.action_mode, self.obs_mode = task, action_mode, obs_mode
        self.image_size, self.render_mode, self.substeps = int(image_size), render_mode, int(substeps)
        self.metadata = {**self.metadata, "render_fps": max(1, round(PHYSICS_HZ / self.substeps))}
        self.robot = Robot(self.desc)
        spec = task_spec(task)
        task_cls = spec.rules_class()
        self.scene = TabletopScene(self.desc, goal_shape=task_cls.goal_shape, with_object=task_cls.has_object)
        self._arm_ids = self.scene.joint_ids("robot", self.desc.arm_joints)
        self._grip_ids = self.scene.joint_ids("robot", self.desc.gripper.joints) if self.desc.gripper else []
        self._joint_ids = self._arm_ids + self._grip_ids  # one PyBullet call reads or drives them all
        self._forces = np.concatenate(
            [
                self.scene.joint_max_forces("robot", self._arm_ids, _DEFAULT_ARM_FORCE),
                self.scene.joint_max_forces("robot", self._grip_ids, _DEFAULT_GRIPPER_FORCE),
            ]
        )
        self.controller = ActionController(self.robot, action_mode, max_ee_step, max_joint_step)
        self.max_ee_step, self.max_joint_step = self.controller.max_ee_step, self.controller.max_joint_step
        self.workspace = self.controller.workspace
        self.task: Task = spec.make_rules(self.scene, self._ee_position, self.workspace)
        self._sampler = ViewpointSampler.around(self.desc.camera) if camera == "random" else None
        if isinstance(camera, Camera):
            same = (camera.width, camera.height) == (self.image_size, self.image_size)
            self._camera = camera if same else camera.resized(self.image_size, self.image_size)
        else:
            self._camera = Camera.from_spec(self.desc.camera, self.image_size, self.image_size)
        self._prompt_kind = prompt
        self.prompter = ActionPrompter(self.robot, self._camera, kind=prompt)
        self.state_layout = state_layout(self.robot.num_joints, self.task.has_object)
        self.interface = EnvInterface(
            task, action_mode, self.state_layout, self.workspace, self.max_ee_step, self.max_joint_step
        )  # what policies read, as in the world-model envs
        self.action_space = self.controller.action_space
        self.observation_space = observation_space(self.state_layout, obs_mode, self.image_size)
        self._render: SceneRender | None = None
        self.controller.reset(self.robot.home, 1.0)
        self._measure()

    # ----------------------------------------------------------------------------------------- construction
    @staticmethod
    def _load_robot(robot: str | RobotDescription) -> RobotDescription:
        arms = ", ".join(arm_robots())
        if isinstance(robot, RobotDescription):
            desc = robot
        elif str(robot).endswith(".toml") or robot in list_robots():
            desc = load_description(robot)
        else:
            raise ValueError(f"unknown robot {robot!r}; simulated robots: {arms}")
        if desc.kind != "arm":
            raise ValueError(
                f"robot {desc.name!r} is a {desc.kind}, it has no simulated body; simulated robots: {arms}"
            )
        return desc

    @staticmethod
    def _validate(task, action_mode, obs_mode, image_size, camera, prompt, render_mode, substeps) -> None:
        checks = (
            ("task", task, tuple(TASKS)),
            ("action_mode", action_mode, ACTION_MODES),
            ("obs_mode", obs_mode, OBS_MODES),
            ("prompt", prompt, PROMPT_KINDS),
        )
        for name, value, valid in checks:
            if value not in valid:
                raise ValueError(f"`{name}` must be one of {', '.join(valid)}; got {value!r}")
        if not isinstance(camera, Camera) and camera not in CAMERA_MODES:
            raise ValueError(f"`camera` must be one of {', '.join(CAMERA_MODES)} or a Camera; got {camera!r}")
        if render_mode not in (None, *SimEnv.metadata["render_modes"]):
            raise ValueError(
                f"`render_mode` must be None or one of {SimEnv.metadata['render_modes']}; got {render_mode!r}"
            )
        if int(image_size) < 8:
            raise ValueError(f"`image_size` must be at least 8, got {image_size}")
        if int(substeps) < 1:
            raise ValueError(f"`substeps` must be at least 1, got {substeps}")

    # ----------------------------------------------------------------------------------------- public state
    @property
    def camera(self) -> Camera:
        """The camera of the current episode (redrawn at each reset with ``camera="random"``)."""
        return self._camera

    @property
    def command(self) -> RobotCommand:
        """The commanded robot state (joint targets, gripper openness, TCP target)."""
        return self.controller.command

    @property
    def commanded_ee_position(self) -> np.ndarray:
        """(3,) the TCP target of the last command."""
        return self.controller.command.ee_position.copy()

    def _ee_position(self) -> np.ndarray:
        return self._ee.copy()

    # ----------------------------------------------------------------------------------------- gym API
    def reset(
        self,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.scene.restore()  # history-free: contact caches are dropped with the props they belong to
        if self._sampler is not None:
            self._camera = self._sampler.sample(self.np_random, self.image_size, self.image_size)
            self.prompter = ActionPrompter(self.robot, self._camera, kind=self._prompt_kind)
        self.scene.set_joint_angles(
            "robot", self._joint_ids, np.concatenate([self.robot.home, self._gripper_positions(1.0)])
        )
        self.controller.reset(self.robot.home, 1.0)
        self._send_command()
        self.task.reset(self.np_random)
        self._measure()
        obs = self._get_obs()
        info, _ = self._get_info()
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.controller.step(action)
        self._send_command()
        self.scene.step(self.substeps)
        self._measure()
        obs = self._get_obs()
        info, achieved = self._get_info()
        reward = float(self.task.compute_reward(achieved, info["goal"], info))
        return obs, reward, bool(info["is_success"]), False, info

    def render(self) -> np.ndarray | None:
        """The current camera image, (H, W, 3) uint8, with ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            gym.logger.warn("render() needs a render_mode; create the env with render_mode='rgb_array'")
            return None
        return self.frame().rgb.copy()

    def frame(self) -> SceneRender:
        """The current image with robot and cube masks, rendered at most once per step (for recorders)."""
        if self._render is None:
            self._render = self.scene.render(self._camera)
        return self._render

    def close(self) -> None:
        for part in ("scene", "robot"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()

    # ----------------------------------------------------------------------------------------- internals
    def _gripper_positions(self, openness: float) -> np.ndarray:
        return self.desc.gripper.joint_positions(openness) if self.desc.gripper else np.zeros(0)

    def _send_command(self) -> None:
        cmd = self.controller.command
        targets = np.concatenate([cmd.joints, self._gripper_positions(cmd.gripper)])
        self.scene.control_joints("robot", self._joint_ids, targets, self._forces)

    def _measure(self) -> None:
        """Read the achieved state; the TCP comes from the kinematic model, so it matches the prompt's FK."""
        angles = self.scene.get_joint_angles("robot", self._joint_ids)
        n = len(self._arm_ids)
        self._q = angles[:n].copy()
        grip = self.desc.gripper
        self._grip = grip.openness(angles[n:]) if grip else 0.0
        # the simulator's arm is the kinematic model's URDF at the same base: its link frame is the model's FK
        self._ee = self.robot.tcp_position(*self.scene.get_link_pose("robot", self.robot.ee_link_id))
        self._render = None

    def _state(self) -> np.ndarray:
        parts = [self._q, self._ee, [self._grip]]
        if self.task.has_object:
            parts.append(self.task.get_obs())
        parts.append(self.task.get_goal())
        return np.concatenate(parts).astype(np.float32)

    def _get_obs(self) -> Any:
        if self.obs_mode == "state":
            return self._state()
        if self.obs_mode == "image":
            return self.frame().rgb.copy()
        return {"image": self.frame().rgb.copy(), "state": self._state()}

    def _get_info(self) -> tuple[dict[str, Any], np.ndarray]:
        """The step's ``info`` and the task's achieved goal (read once, for the reward too)."""
        achieved, goal = self.task.get_achieved_goal(), self.task.get_goal()
        cmd = self.controller.command
        info: dict[str, Any] = {
            "commanded_joints": cmd.joints.copy(),
            "commanded_gripper": cmd.gripper,
            "commanded_ee_position": cmd.ee_position.copy(),
            "joints": self._q.copy(),
            "gripper": self._grip,
            "ee_position": self._ee.copy(),
            "goal": goal,
        }
        if self.task.has_object:
            info["object_pose"] = self.task.get_object_pose()
        info["is_success"] = bool(self.task.is_success(achieved, goal))
        info.update({k: float(v) for k, v in self.task.reward_terms(achieved, goal, self._ee).items()})
        if self.info_prompt:
            info["prompt"] = self.prompter.render(cmd.joints, cmd.gripper)
        if self._render is not None:
            info["robot_mask"] = self._render.robot_mask.copy()
            info["object_mask"] = self._render.object_mask.copy()
        return info, achieved


def state_layout(num_joints: int, has_object: bool) -> dict[str, slice]:
    """Name -> slice of the state observation: joints (J), ee_position (3), gripper (1), object_position (3,
    tasks with an object only), goal (3)."""
    sizes = {"joints": num_joints, "ee_position": 3, "gripper": 1}
    if has_object:
        sizes["object_position"] = 3
    sizes["goal"] = 3
    layout, start = {}, 0
    for name, size in sizes.items():
        layout[name] = slice(start, start + size)
        start += size
    return layout


def observation_space(layout: dict[str, slice], obs_mode: str, image_size: int) -> spaces.Space:
    """The observation space of ``obs_mode`` (``image``, ``state`` or ``both``) for a state ``layout``."""
    # Finite bounds that no reachable state leaves: joints within two turns, positions within the floor.
    n = max(s.stop for s in layout.values())
    low, high = np.full(n, -_POSITION_BOUND), np.full(n, _POSITION_BOUND)
    low[layout["joints"]], high[layout["joints"]] = -4 * np.pi, 4 * np.pi
    low[layout["gripper"]], high[layout["gripper"]] = 0.0, 1.0
    state = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
    image = spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)
    if obs_mode == "state":
        return state
    if obs_mode == "image":
        return image
    return spaces.Dict({"image": image, "state": state})
