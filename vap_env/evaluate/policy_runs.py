"""One policy's episodes in the simulator and in imagination, from the same seeded initial states.

A policy comes from a *source*: a spec string (``"scripted:noise=0.3"``, ``"sb3:ppo.zip"``), a policy object
(``act``/``reset``, or a :class:`BatchPolicy` with ``act_batch``), a policy class or a factory
``(env) -> policy``; ``as_policy`` turns any of them into a checked policy. How many instances act, and how
they are reset, decides whether both worlds see the same policy randomness:

- a spec, a class or a factory builds one instance per episode in imagination (each reset with its
  episode's seed, all the episodes of a batch stepped together) and one for all the episodes in the
  simulator (reset with each episode's seed before it): as ``reset(seed)`` reseeds the policy's own
  randomness, episode ``k`` sees the same noise in both worlds;
- a :class:`BatchPolicy` is one instance for a whole imagined batch (``reset_batch(seeds)``, then one
  ``act_batch`` call a step for every sub-env), and in the simulator acts on batches of one, reset with
  ``[seed]`` before each episode: the worlds agree when row ``i``'s randomness depends only on ``seeds[i]``
  (a deterministic policy always does);
- any other object is a single instance that keeps whatever per-episode state it has, so its imagined
  episodes run one at a time (batches of one), each after ``reset(seed)``, as in the simulator. Give a
  class or a factory instead to have it batched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from vap_env.data import Episode
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.policies import Policy, PolicyError, as_policy, is_batch_policy, reads_images, split_named
from vap_env.recording import record_episode, stack_episode

PolicySource = str | Policy | type | Callable[[Any], Any]
"""A spec string, a policy (or batch policy) object, a policy class, or a factory ``(env) -> policy``."""

__all__ = [
    "PolicyError",
    "PolicyResult",
    "PolicySource",
    "builds_instances",
    "check_policies",
    "describe",
    "named_sources",
    "run_imagined",
    "run_sim",
    "split_named",
]


@dataclass
class PolicyResult:
    """Outcome of one policy's episodes in one world.

    Attributes:
        success: ``(N,)`` bool, solved at some step.
        returns: ``(N,)`` summed rewards.
        lengths: ``(N,)`` steps taken.
        final_distance: ``(N,)`` metres from the achieved goal (the cube for push, the TCP for reach; in
            imagination the cube *estimated* from the frames) to the goal, at the episode's last step.
        object_displacement: ``(N,)`` metres the cube moved from its start (NaN for tasks without one).
        seeds: ``(N,)`` the episodes' reset seeds.
        frames: With frame capture (and no ``on_batch`` taking them), one ``(T + 1, H, W, 3)`` uint8 array
            per episode; else empty.
    """

    success: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    final_distance: np.ndarray
    object_displacement: np.ndarray
    seeds: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)

    _ARRAYS = ("success", "returns", "lengths", "final_distance", "object_displacement", "seeds")

    def select(self, index: Sequence[int]) -> PolicyResult:
        """The episodes at positions ``index``, in that order (frames too, if any)."""
        arrays = [getattr(self, n)[list(index)] for n in self._ARRAYS]
        return PolicyResult(*arrays, frames=[self.frames[k] for k in index] if self.frames else [])

    @classmethod
    def concatenate(cls, parts: Sequence[PolicyResult]) -> PolicyResult:
        arrays = [np.concatenate([getattr(p, n) for p in parts]) for n in cls._ARRAYS]
        return cls(*arrays, frames=[f for p in parts for f in p.frames])


# ------------------------------------------------------------------------------------------- sources
def named_sources(policies: Mapping[str, PolicySource] | Sequence[str]) -> dict[str, PolicySource]:
    """The policies as ``name -> source``.

    Args:
        policies: A dict ``name -> source``, or spec strings; a string ``NAME=SPEC`` (``=`` before any
            ``:``) is named ``NAME``, any other is named by its own text.

    Raises:
        ValueError: No policy, an empty or repeated name, or a bare string instead of a list.
    """
    if isinstance(policies, str):
        raise ValueError(f"`policies` must be a list of specs or a dict name -> source, got {policies!r}")
    if isinstance(policies, Mapping):
        named = list(policies.items())
    else:
        named = []
        for item in policies:
            if not isinstance(item, str):
                raise ValueError(
                    f"a list of `policies` holds spec strings (use a dict for objects), got {item!r}"
                )
            name, spec = split_named(item)
            named.append((name or spec, spec))
    if not named:
        raise ValueError("`policies` must name at least one policy, got none")
    out: dict[str, PolicySource] = {}
    for name, source in named:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"policy names must be non-empty strings, got {name!r}")
        if name in out:
            raise ValueError(f"policy name {name!r} is given twice; name each policy once")
        out[name] = source
    return out


def describe(source: PolicySource) -> str:
    """The spec text, or what kind of object a non-string source is (for the report)."""
    if isinstance(source, str):
        return source
    if isinstance(source, type) or not hasattr(source, "act") and not hasattr(source, "act_batch"):
        return f"<factory {getattr(source, '__qualname__', type(source).__name__)}>"
    return f"<{type(source).__name__} object>"


def builds_instances(source: PolicySource) -> bool:
    """Whether ``source`` makes a fresh policy each time it is built (a spec, class or factory)."""
    return isinstance(source, str | type) or not (hasattr(source, "act") or hasattr(source, "act_batch"))


def check_policies(sources: Mapping[str, PolicySource], env: gym.Env) -> dict[str, Any]:
    """Builds every policy once against ``env`` (the simulator), before any episode runs.

    Returns:
        ``name -> policy``, the instances the simulator episodes then use.

    Raises:
        ValueError: Naming every policy that could not be built (a bad spec, a missing checkpoint, a
            factory that raised), with its message.
    """
    built, errors = {}, []
    for name, source in sources.items():
        try:
            built[name] = as_policy(source, env, name=name)
        except Exception as error:  # noqa: BLE001 - any failure to build is the argument's fault
            errors.append(f"{name!r}: {error_message(error)}")
    if errors:
        raise ValueError("could not build the policies: " + "; ".join(errors))
    return built


def error_message(error: BaseException) -> str:
    """``"TypeError: ..."``; a ``ValueError`` (a bad argument) by its message alone, a :class:`PolicyError`
    without the policy's name (the report's row already names it)."""
    if isinstance(error, PolicyError):
        return error.message
    return str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"


# ------------------------------------------------------------------------------------------- simulator
class _SingleRow:
    """A :class:`BatchPolicy` seen as a per-episode policy: batches of one, reset with ``[seed]``."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset_batch([seed])

    def act(self, obs: Any) -> np.ndarray:
        batch = (
            {k: np.asarray(v)[None] for k, v in obs.items()}
            if isinstance(obs, dict)
            else np.asarray(obs)[None]
        )
        return np.asarray(self.policy.act_batch(batch))[0]


def run_sim(
    env: gym.Env,
    policy: Any,
    seeds: list[int],
    max_steps: int,
    progress: bool = False,
    name: str | None = None,
    frames: int | None = None,
) -> tuple[PolicyResult, list[Episode]]:
    """Runs a policy in the simulator from each seed; returns its results and recorded episodes.

    Args:
        env: The simulator env: ``obs_mode="both"``, or ``"state"`` with ``frames`` for a policy that does not
            read images (:func:`~vap_env.policies.base.reads_images`).
        policy: A policy built for ``env`` (one instance for every episode, reset with each episode's seed
            before it), or a source to build it from (``as_policy``).
        seeds: Reset seeds of the episodes.
        max_steps: The episode length limit.
        progress: Show a progress bar over the episodes.
        name: The policy's name, recorded as each episode's ``policy`` (default: the spec, if one).
        frames: Keep only each episode's first ``frames`` frames (and the states, actions and rewards between
            them): what open-loop replays to that horizon score. Each episode still runs to its end, and the
            results describe all of it; ``extra["frames_of"]`` of a cut episode gives its full length in
            frames. With a state-only ``env`` only those frames are rendered (a step with a 64x64 camera
            image costs about 10x a state-only one). ``None`` keeps every frame.

    Raises:
        ValueError: A state-only ``env`` without ``frames``, or for a policy that reads images.
    """
    name = name if name is not None else policy if isinstance(policy, str) else describe(policy)
    if builds_instances(policy):
        policy = as_policy(policy, env, name=name)
    acting = _SingleRow(policy) if is_batch_policy(policy) else policy
    state_only = env.unwrapped.obs_mode == "state"
    if state_only and (frames is None or reads_images(policy)):
        raise ValueError(
            f"policy {name!r}: a state-only simulator records frames only for a policy that does not read "
            "images, and only with `frames`; use an env with obs_mode='both'"
        )
    has_object = bool(env.unwrapped.task.has_object)
    episodes, outcomes = [], []
    for seed in tqdm(seeds, desc=f"sim {name}", unit="ep", disable=not progress, leave=False):
        if state_only:
            episode, outcome = _record_leading_frames(env, acting, seed, name, max_steps, frames, has_object)
        else:
            episode = record_episode(env, acting, seed, name, max_steps=max_steps)
            outcome = _outcome(episode, has_object)
            if frames is not None and episode.num_frames > frames:
                episode = _leading(episode, frames)
        episodes.append(episode)
        outcomes.append(outcome)
    success, returns, lengths, final, moved = (np.array(column) for column in zip(*outcomes, strict=True))
    return PolicyResult(success, returns, lengths, final, moved, np.array(seeds)), episodes


def _outcome(episode: Episode, has_object: bool) -> tuple[bool, float, int, float, float]:
    """(success, return, length, final distance, cube displacement) of a whole recorded episode."""
    final, moved = _sim_distances(episode, has_object)
    return episode.success, float(episode.rewards.sum()), len(episode.actions), final, moved


_PER_FRAME = ("commanded_joints", "commanded_gripper", "joints", "gripper", "ee_position")


def _leading(episode: Episode, frames: int) -> Episode:
    """The first ``frames`` frames of ``episode`` (states, actions and rewards between them), marked cut."""
    per_frame = {
        k: getattr(episode, k)[:frames] for k in (*_PER_FRAME, "object_poses", "robot_mask", "object_mask")
    }
    return replace(
        episode,
        frames=episode.frames[:frames],
        **per_frame,
        actions=episode.actions[: frames - 1],
        rewards=episode.rewards[: frames - 1],
        extra=dict(episode.extra, frames_of=episode.num_frames),
    )


def _record_leading_frames(
    env: gym.Env, policy: Any, seed: int, name: str, max_steps: int, frames: int, has_object: bool
) -> tuple[Episode, tuple[bool, float, int, float, float]]:
    """One episode in a state-only simulator, rendering only its first ``frames`` frames.

    The same episode as :func:`~vap_env.recording.record_episode` in an ``obs_mode="both"`` env records, cut
    to ``frames`` frames (``SimEnv`` draws the same camera and states whatever it observes, and renders a
    frame on demand with ``frame()``), and the outcome of the whole episode.
    """
    base = env.unwrapped
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    rec: dict[str, list] = {k: [] for k in (*_PER_FRAME, "object_poses", "robot_mask", "object_mask")}
    images: list[np.ndarray] = []
    actions, rewards = [], []

    def keep(info: dict) -> None:
        shot = base.frame()
        images.append(shot.rgb.copy())
        rec["robot_mask"].append(shot.robot_mask.copy())
        rec["object_mask"].append(shot.object_mask.copy())
        rec["object_poses"].append(info.get("object_pose", np.zeros(7)))
        for k in _PER_FRAME:
            rec[k].append(info[k])

    keep(info)
    first_info, success, all_rewards = info, bool(info.get("is_success", False)), []
    for _ in range(max_steps):
        action = np.asarray(policy.act(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        all_rewards.append(reward)
        success = success or bool(info.get("is_success", False))
        if len(images) < frames:
            actions.append(action)
            rewards.append(reward)
            keep(info)
        if terminated or truncated:
            break
    episode = stack_episode(env, images, rec, rec["object_poses"], actions, rewards, info["goal"], success,
                            seed, name)  # fmt: skip
    if len(all_rewards) + 1 > len(images):
        episode.extra["frames_of"] = len(all_rewards) + 1
    f32 = np.float32
    # as _outcome computes them from a whole recorded episode (float32 as recorded), to the last bit
    steps, total = len(all_rewards), float(np.asarray(all_rewards, f32).sum())
    goal = np.asarray(info["goal"], f32).astype(np.float64)
    if has_object:
        start, end = (np.asarray(i["object_pose"][:3], f32).astype(np.float64) for i in (first_info, info))
        final, moved = float(np.linalg.norm(end - goal)), float(np.linalg.norm(end - start))
    else:
        end = np.asarray(info["ee_position"], f32).astype(np.float64)
        final, moved = float(np.linalg.norm(end - goal)), float("nan")
    return episode, (success, total, steps, final, moved)


def _sim_distances(episode: Episode, has_object: bool) -> tuple[float, float]:
    """(final distance to the goal, cube displacement or NaN) of a recorded episode."""
    goal = episode.goal.astype(np.float64)
    if not has_object:
        return float(np.linalg.norm(episode.ee_position[-1] - goal)), float("nan")
    cube = episode.object_poses[:, :3].astype(np.float64)
    return float(np.linalg.norm(cube[-1] - goal)), float(np.linalg.norm(cube[-1] - cube[0]))


# ------------------------------------------------------------------------------------------- imagination
class _SubEnvView:
    """What a policy reads from an env, for one sub-env of a vector env (single spaces)."""

    def __init__(self, venv: WorldModelVectorEnv) -> None:
        self.action_space, self.observation_space = venv.single_action_space, venv.single_observation_space
        self.interface = venv.interface

    @property
    def unwrapped(self) -> _SubEnvView:
        return self


def _row(obs: Any, i: int) -> Any:
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def imagined_batch_size(source: PolicySource, policy: Any, batch_size: int) -> int:
    """Sub-envs per imagined batch: 1 for a shared per-episode object (its state cannot be split)."""
    return batch_size if builds_instances(source) or is_batch_policy(policy) else 1


def run_imagined(
    make_env: Callable[[int], WorldModelVectorEnv],
    source: PolicySource,
    seeds: list[int],
    max_steps: int,
    batch_size: int = 16,
    name: str = "",
    progress: bool = False,
    capture: bool = False,
    on_batch: Callable[[PolicyResult], object] | None = None,
) -> PolicyResult:
    """Runs the policy of ``source`` from each seed's initial state in imagination, ``batch_size`` at a time.

    Frame capture only copies the observations: the episodes, and every number of the result, are the same
    with or without it.

    Args:
        make_env: ``num_envs -> WorldModelVectorEnv`` (``obs_mode="both"``, ``reset_mode="sim"``, truncating
            at ``max_steps``); called once per batch size needed.
        source: The policy source (see the module docstring for the instances it makes).
        seeds: Reset seeds of the episodes.
        max_steps: The episode length limit.
        batch_size: Sub-envs per vector env (:func:`imagined_batch_size`: 1 for a shared per-episode object).
        name: The policy's name, for the progress bar.
        progress: Show a progress bar over the steps.
        capture: Capture every episode's frames (``PolicyResult.frames``), for videos.
        on_batch: Called with each batch's result as soon as the batch has run (with its frames, given
            ``capture``); the returned result then holds no frames, so that memory holds one batch's.
    """
    envs: dict[int, WorldModelVectorEnv] = {}
    results = []
    try:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            if len(chunk) not in envs:
                envs[len(chunk)] = make_env(len(chunk))
            env = envs[len(chunk)]
            actor = _actor(source, _SubEnvView(env), chunk, name)
            bar = tqdm(
                total=max_steps, desc=f"imagined {name}", unit="step", disable=not progress, leave=False
            )
            with bar:
                batch = _run_batch(env, actor, chunk, max_steps, bar.update, capture)
            if on_batch is not None:
                on_batch(batch)
                batch = replace(batch, frames=[])
            results.append(batch)
    finally:
        for env in envs.values():
            env.close()
    return PolicyResult.concatenate(results)


Actor = Callable[[Any, np.ndarray], np.ndarray]
"""``(obs batch, active (N,) bool) -> (N, A)`` actions for the sub-envs of one imagined batch."""


def _actor(source: PolicySource, view: _SubEnvView, seeds: list[int], name: str) -> Actor:
    """The policies of one batch, reset with its seeds, as one function of the batched observation."""
    first = as_policy(source, view, name=name)
    idle = np.zeros(view.action_space.shape, dtype=np.float32)
    if is_batch_policy(first):
        first.reset_batch(list(seeds))

        def act_batch(obs: Any, active: np.ndarray) -> np.ndarray:
            # finished sub-envs were autoreset: their rows act too (one call), their actions are dropped
            actions = np.asarray(first.act_batch(obs), dtype=np.float32)
            return np.where(active[:, None], actions, idle)

        return act_batch
    policies = [first] + [as_policy(source, view, name=name) for _ in seeds[1:]]
    for policy, seed in zip(policies, seeds, strict=True):
        policy.reset(seed=seed)

    def act(obs: Any, active: np.ndarray) -> np.ndarray:
        return np.stack([policies[i].act(_row(obs, i)) if active[i] else idle for i in range(len(seeds))])

    return act


def _run_batch(
    venv: WorldModelVectorEnv,
    actor: Actor,
    seeds: list[int],
    max_steps: int,
    tick: Callable[[], object],
    capture: bool = False,
) -> PolicyResult:
    n = len(seeds)
    obs, info = venv.reset(seed=list(seeds))
    success = np.asarray(info.get("is_success", np.zeros(n)), dtype=bool).copy()
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    start_cube = info.get("object_position")
    last = [_task_state(info, i) for i in range(n)]  # (achieved goal, goal, cube) at each episode's last step
    frames = [[obs["image"][i].copy()] for i in range(n)] if capture else []
    for _ in range(max_steps):
        # finished sub-envs were autoreset (same-step); they take no-op steps until the batch ends
        obs, reward, terminated, truncated, info = venv.step(actor(obs, active))
        ended = terminated | truncated
        for i in np.flatnonzero(active):
            # an episode that ended this step was autoreset: its last state is in ``final_info``/``final_obs``
            last[i] = _task_state(info["final_info"] if ended[i] else info, i)
            if capture:
                frames[i].append((info["final_obs"][i] if ended[i] else _row(obs, i))["image"].copy())
        returns += np.where(active, reward, 0.0)
        lengths += active
        success |= active & terminated
        active &= ~ended
        tick()
        if not active.any():
            break
    final = np.array([np.linalg.norm(achieved - goal) for achieved, goal, _ in last])
    moved = np.full(n, np.nan)
    if start_cube is not None:
        moved = np.array([np.linalg.norm(cube - start_cube[i]) for i, (_, _, cube) in enumerate(last)])
    return PolicyResult(
        success, returns, lengths, final, moved, np.array(seeds), [np.stack(f) for f in frames]
    )


def _task_state(info: dict[str, Any], i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sub-env ``i``'s (achieved goal, goal, estimated cube or ``None``) from a vector env's ``info``."""
    cube = info["object_position"][i].astype(np.float64) if "object_position" in info else None
    achieved = cube if cube is not None else info["ee_position"][i].astype(np.float64)
    return achieved, info["goal"][i].astype(np.float64), cube
