"""Experiment 15a: how well does a small learned push model, in state space, predict the held-out cube's motion?

Features per transition t -> t + 1: the TCP's (x, y) relative to the cube at t, its (x, y) motion, its height at t
and t + 1, the commanded gripper at t + 1; in the cube's frame (its yaw mod 90 degrees) unless ``YAW=none``, the
TCP from forward kinematics of the commanded joints unless ``EE=achieved`` (the simulator's). Target: the cube's
planar motion (and yaw change). Trained on A+B+C, evaluated on the held-out set: one step on the transitions where
the cube moves, and 16 steps open loop (its own predictions fed back) on the contact windows of
``benchmarks/contact_fidelity.py`` (lead 4, moved 2 cm).

Run from the experiment directory (``data/f128_*`` as in docs/results/interaction_experiments.md):
``OMP_NUM_THREADS=1 python exp15a_push_feasibility.py 3000`` (and with ``YAW=none``, ``EE=achieved``).
The package's version of the kept variant is ``vap_env.model.object_dynamics``.
"""

import os
import sys
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vap_env.data import EpisodeDataset
from vap_env.kinematics import Robot

DIRS = ["data/f128_train_a", "data/f128_train_b", "data/f128_train_c-1", "data/f128_train_c-2"]
COMMANDED = os.environ.get("EE", "commanded") == "commanded"
NO_YAW = os.environ.get("YAW", "true") == "none"
HORIZON, LEAD = 16, 4


def load(dirs: list[str], robot: Robot) -> list[tuple]:
    out = []
    for d in dirs:
        for e in EpisodeDataset(d):
            ee = np.stack([robot.ee_pose(q)[0] for q in e.commanded_joints]) if COMMANDED else e.ee_position
            gripper, poses = e.commanded_gripper.astype(np.float64), e.object_poses.astype(np.float64)
            out.append((ee.astype(np.float64), gripper, poses))
    return out


def yaw_of(q: np.ndarray) -> np.ndarray:
    if NO_YAW:
        return np.zeros(len(q))
    m = Rotation.from_quat(q).as_matrix()
    return np.arctan2(m[:, 1, 0], m[:, 0, 0])


def wrap90(a: np.ndarray) -> np.ndarray:
    return (a + np.pi / 4) % (np.pi / 2) - np.pi / 4


def rot(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def features(ee0, ee1, g1, cube_xy, yaw):  # noqa: ANN001, ANN201
    y = wrap90(yaw)
    r = rot(ee0[..., :2] - cube_xy, -y)
    m = rot(ee1[..., :2] - ee0[..., :2], -y)
    return np.concatenate([r * 10, m * 50, ee0[..., 2:3] * 10, ee1[..., 2:3] * 10, g1[..., None]], -1), y


def transitions(eps: list[tuple]) -> list[torch.Tensor]:
    inputs, targets, moving = [], [], []
    for ee, g, obj in eps:
        yaw = yaw_of(obj[:, 3:7])
        f, y = features(ee[:-1], ee[1:], g[1:], obj[:-1, :2], yaw[:-1])
        d = rot(obj[1:, :2] - obj[:-1, :2], -y) * 50
        dy = wrap90(yaw[1:] - yaw[:-1])[:, None] * 5
        inputs.append(f)
        targets.append(np.concatenate([d, dy], -1))
        moving.append((np.linalg.norm(obj[1:, :2] - obj[:-1, :2], axis=1) >= 0.002).astype(float))
    return [torch.tensor(np.concatenate(a), dtype=torch.float32) for a in (inputs, targets, moving)]


def step(net: torch.nn.Module, ee0, ee1, g1, xy, yaw):  # noqa: ANN001, ANN201
    f, y = features(ee0, ee1, g1, xy, yaw)
    with torch.no_grad():
        out = net(torch.tensor(f, dtype=torch.float32)[None])[0].numpy().astype(np.float64)
    return xy + rot(out[:2] / 50, y), yaw + out[2] / 5


def main() -> None:
    torch.set_num_threads(1)
    robot = Robot("panda")
    start = time.time()
    train, held = load(DIRS, robot), load(["data/f128_heldout"], robot)
    x, y, w = transitions(train)
    hx, hy, hw = transitions(held)
    print(f"ee {'commanded FK' if COMMANDED else 'achieved'}, yaw {'none' if NO_YAW else 'true'}")
    print(
        f"{len(x)} train transitions ({w.mean():.1%} moving), {len(hx)} held out; load {time.time() - start:.0f} s"
    )
    torch.manual_seed(0)
    layers = [torch.nn.Linear(x.shape[1], 256), torch.nn.SiLU()]
    layers += [torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(256, 3))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(0)
    start = time.time()
    for s in range(steps):
        i = torch.randint(0, len(x), (512,), generator=generator)
        loss = ((net(x[i]) - y[i]) ** 2).sum(-1).mul(1 + 3 * w[i]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if s % 1000 == 0 or s == steps - 1:
            with torch.no_grad():
                mv = hw > 0
                err = (net(hx[mv]) - hy[mv])[:, :2].norm(dim=-1).mean().item() / 50
                zero = hy[mv][:, :2].norm(dim=-1).mean().item() / 50
            print(
                f"step {s}: loss {loss.item():.4f}; held-out moving transitions: one-step error {err * 1000:.2f} mm "
                f"(zero motion {zero * 1000:.2f} mm)"
            )
    print(f"training {time.time() - start:.0f} s")
    net.eval()
    errors, repeats, along = [], [], []
    for ee, gr, obj in held:
        travel = np.linalg.norm(obj[:, :2] - obj[0, :2], axis=1)
        if len(obj) - 1 < HORIZON or not (travel >= 0.005).any():
            continue
        s0 = max(0, min(int(np.argmax(travel >= 0.005)) - LEAD, len(obj) - 1 - HORIZON))
        if np.linalg.norm(obj[s0 + HORIZON, :2] - obj[s0, :2]) < 0.02:
            continue
        yaw = yaw_of(obj[:, 3:7])
        xy, a = obj[s0, :2].copy(), yaw[s0]
        for t in range(s0, s0 + HORIZON):
            xy, a = step(net, ee[t], ee[t + 1], gr[t + 1], xy, a)
        true = obj[s0 + HORIZON, :2]
        errors.append(np.linalg.norm(xy - true))
        repeats.append(np.linalg.norm(obj[s0, :2] - true))
        d = true - obj[s0, :2]
        along.append(np.dot(xy - obj[s0, :2], d) / np.dot(d, d))
    print(
        f"{len(errors)} contact windows: centre error at {HORIZON}: learned push {np.mean(errors) * 100:.2f} cm, "
        f"repeat {np.mean(repeats) * 100:.2f} cm; along-push share {np.mean(along):.2f}; "
        f"median error {np.median(errors) * 100:.2f} cm"
    )


if __name__ == "__main__":
    main()
