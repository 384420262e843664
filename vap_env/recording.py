"""Recording episodes in the simulator: a policy acts in ``SimEnv`` and every frame's ground truth is kept.

Prompts are not stored: they are rendered later from the *commanded* robot state and the camera (cheap for
skeletons), because rendering them from the achieved state would leak what contact did to the arm.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vap_env.data import DatasetWriter, Episode


def record_episode(env, policy, seed: int, policy_spec: str = "", max_steps: int | None = None) -> Episode:
    """Run one episode of ``policy`` in a ``SimEnv`` (``obs_mode="both"``) and return it with its ground truth.

    Args:
        env: A ``SimEnv`` (optionally wrapped, e.g. by ``TimeLimit``) rendering image observations.
        policy: An object with ``reset(seed)`` and ``act(obs) -> action``.
        seed: Reset seed; the same seed reproduces the initial state.
        policy_spec: Recorded as the episode's ``policy`` field.
        max_steps: Stop after this many steps (defaults to the env's time limit).
    """
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    limit = max_steps or (env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 50)
    keys = (
        "commanded_joints",
        "commanded_gripper",
        "joints",
        "gripper",
        "ee_position",
        "robot_mask",
        "object_mask",
    )
    rec: dict[str, list] = {k: [info[k]] for k in keys}
    frames = [obs["image"]]
    poses = [info.get("object_pose", np.zeros(7))]
    actions, rewards, success = [], [], bool(info.get("is_success", False))
    for _ in range(limit):
        action = np.asarray(policy.act(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        frames.append(obs["image"])
        poses.append(info.get("object_pose", np.zeros(7)))
        for k in keys:
            rec[k].append(info[k])
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    return stack_episode(env, frames, rec, poses, actions, rewards, info["goal"], success, seed, policy_spec)


def stack_episode(
    env,
    frames: list[np.ndarray],
    states: dict[str, list],
    object_poses: list[np.ndarray],
    actions: list[np.ndarray],
    rewards: list[float],
    goal: np.ndarray,
    success: bool,
    seed: int,
    policy_spec: str,
) -> Episode:
    """An :class:`Episode` from per-step lists recorded in ``env`` (a ``SimEnv``, possibly wrapped).

    ``states`` holds one entry per frame of each of ``commanded_joints``, ``commanded_gripper``, ``joints``,
    ``gripper``, ``ee_position``, ``robot_mask`` and ``object_mask`` (``info``'s keys); ``actions`` and
    ``rewards`` one per transition.
    """
    base, f32 = env.unwrapped, np.float32
    return Episode(
        frames=np.stack(frames).astype(np.uint8),
        joints=np.stack(states["joints"]).astype(f32),
        gripper=np.asarray(states["gripper"], f32),
        commanded_joints=np.stack(states["commanded_joints"]).astype(f32),
        commanded_gripper=np.asarray(states["commanded_gripper"], f32),
        ee_position=np.stack(states["ee_position"]).astype(f32),
        actions=np.stack(actions).astype(f32) if actions else np.zeros((0, *env.action_space.shape), f32),
        rewards=np.asarray(rewards, f32),
        object_poses=np.stack(object_poses).astype(f32),
        goal=np.asarray(goal, f32),
        robot_mask=np.stack(states["robot_mask"]).astype(bool),
        object_mask=np.stack(states["object_mask"]).astype(bool),
        success=success,
        camera=base.camera,
        robot=base.robot.name,
        task=base.interface.task_name,
        action_mode=base.interface.action_mode,
        seed=int(seed),
        policy=policy_spec,
    )


def collect(
    robot: str,
    task: str,
    episodes: int,
    policy_spec: str,
    out: str | Path,
    image_size: int = 64,
    camera: str = "fixed",
    action_mode: str = "ee_delta",
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Record ``episodes`` episodes into ``out``; a directory that already holds some is continued.

    Episode ``i`` is reset with seed ``seed + i``, so a resumed or repeated collection records the same
    initial states. Returns the dataset summary.
    """
    import gymnasium as gym

    from vap_env.data import EpisodeDataset
    from vap_env.policies import as_policy
    from vap_env.sim.registration import arm_robots, env_id
    from vap_env.tasks import task_spec

    if robot not in arm_robots():
        raise ValueError(
            f"unknown robot {robot!r} for the simulator; robots with a simulated arm: "
            f"{', '.join(arm_robots())}"
        )
    task_spec(task)  # an unknown task is refused here, naming the known ones
    # prompts are not stored (see the module docstring), so the env draws none
    env = gym.make(
        env_id(robot, task),
        obs_mode="both",
        image_size=image_size,
        camera=camera,
        action_mode=action_mode,
        info_prompt=False,
    )
    try:
        fps = env.metadata.get("render_fps")
        writer = DatasetWriter(
            out,
            {
                "robot": robot,
                "task": task,
                "image_size": [image_size, image_size],
                "camera_mode": camera,
                "action_mode": action_mode,
                "fps": fps,
                "max_episode_steps": env.spec.max_episode_steps if env.spec else None,
            },
        )
        done_seeds = writer.recorded_seeds()
        todo = [seed + i for i in range(episodes) if seed + i not in done_seeds]
        policy = as_policy(policy_spec, env)
        start = time.perf_counter()
        bar = tqdm(todo, desc=f"collect {robot}/{task}", unit="ep", disable=not progress)
        for s in bar:
            ep = record_episode(env, policy, s, policy_spec, max_steps)
            writer.add(ep)
            rate = sum(e["success"] for e in writer.info["episodes"]) / writer.num_episodes
            bar.set_postfix(success=f"{rate:.0%}", frames=ep.num_frames)
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    summary = EpisodeDataset(out).summary()
    summary["recorded_now"] = len(todo)
    summary["seconds"] = round(elapsed, 2)
    return summary
