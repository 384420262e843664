"""Check a new robot description before recording with it: kinematics, prompt alignment, the expert.

Three checks, each with a number to read and a pass mark:

1. inverse kinematics reaches a grid of workspace targets (TCP pointing down): the position error of FK(IK(x));
2. the skeleton prompt lies on the robot: the fraction of the skeleton's pixels on the simulator's robot mask,
   over the frames of a few scripted push episodes (a wrong link, offset or camera shows up here first);
3. the scripted push expert solves the task with it (success over a few seeds).

It also writes a picture, one column per sampled step: the camera frame, the skeleton drawn over it, and the
prompt alone. See ``examples/add_a_robot.md`` for writing the description.

    python examples/check_robot.py vap_env/robots/xarm6.toml --out robot_check.png
    python examples/check_robot.py my_robot.toml --seeds 5 --image-size 128
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from vap_env.description import load_description
from vap_env.kinematics import Robot
from vap_env.policies import make_policy
from vap_env.sim.env import SimEnv

IK_TOLERANCE_M = 0.005  # 5 mm: the scripted experts move 2 cm a step and push a 5 cm cube
ALIGNMENT_PASS = 0.7  # the skeleton is 1-2 px wide; past the arm's silhouette by a pixel is still aligned


def ik_errors(robot: Robot, points_per_axis: int = 4) -> np.ndarray:
    """FK(IK(x)) - x position errors (m) over a grid spanning the description's workspace, 5-25 cm up."""
    d = robot.desc
    xs, ys = np.linspace(*d.workspace_x, points_per_axis), np.linspace(*d.workspace_y, points_per_axis)
    zs = np.linspace(0.05, 0.25, points_per_axis)
    errors = []
    for x in xs:
        for y in ys:
            for z in zs:
                target = np.array([x, y, z])
                errors.append(np.linalg.norm(robot.ee_pose(robot.ik(target))[0] - target))
    return np.asarray(errors)


def episode_checks(robot: str, image_size: int, seeds: int) -> tuple[float, float, list[np.ndarray]]:
    """(success rate, skeleton-on-mask fraction, picture columns) over ``seeds`` scripted push episodes."""
    env = SimEnv(robot=robot, task="push", obs_mode="both", image_size=image_size)
    policy = make_policy("scripted", env)
    successes, on_mask, drawn, columns = 0, 0, 0, []
    for seed in range(seeds):
        obs, info = env.reset(seed=seed)
        policy.reset(seed=seed)
        for t in range(env.spec.max_episode_steps if env.spec else 50):
            skeleton = info["prompt"].any(axis=-1)
            on_mask += int((skeleton & info["robot_mask"]).sum())
            drawn += int(skeleton.sum())
            if seed == 0 and t % 8 == 0 and len(columns) < 5:
                overlay = env.prompter.overlay(
                    obs["image"], info["commanded_joints"], info["commanded_gripper"]
                )
                columns.append(np.concatenate([obs["image"], overlay, info["prompt"]], axis=0))
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            if terminated or truncated:
                break
        successes += bool(info["is_success"])
    env.close()
    return successes / seeds, on_mask / max(drawn, 1), columns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "robot", help="a robot name (see `vap-env robots`) or the path of a description .toml"
    )
    parser.add_argument("--seeds", type=int, default=3, help="scripted push episodes; default: 3")
    parser.add_argument("--image-size", type=int, default=64, help="frame size in pixels; default: 64")
    parser.add_argument("--out", default="robot_check.png", help="the picture; default: robot_check.png")
    args = parser.parse_args(argv)
    try:
        desc = load_description(args.robot)
    except (ValueError, FileNotFoundError) as error:
        print(f"check_robot: {error}", file=sys.stderr)
        return 2
    robot = Robot(desc)
    errors = ik_errors(robot)
    robot.close()
    success, alignment, columns = episode_checks(args.robot, args.image_size, args.seeds)
    checks = [
        (
            "IK reaches the workspace",
            f"max error {1000 * errors.max():.2f} mm",
            errors.max() < IK_TOLERANCE_M,
        ),
        ("skeleton on the robot mask", f"{alignment:.0%} of its pixels", alignment > ALIGNMENT_PASS),
        ("scripted push expert", f"success {success:.0%} over {args.seeds} seeds", success > 0),
    ]
    print(f"{desc.display_name} ({desc.name})")
    for name, value, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}: {value}")
    scale = max(1, 192 // args.image_size)
    grid = np.concatenate(columns, axis=1)
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: frame / skeleton over it / prompt, every 8 steps of seed 0")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
