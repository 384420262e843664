"""Feasibility: how well does a small learned push model, in state space, predict the held-out cube's motion?

Cube-centric features (table frame rotated by the cube's yaw mod 90 deg): the end effector's position relative to
the cube at t, its motion t -> t+1, its height at t and t+1, the gripper; target: the cube's planar motion and yaw
change. Trained on A+B+C, evaluated on the held-out set: one step on moving transitions, and 16 steps open loop
(own predictions fed back) on the contact windows of benchmarks/contact_fidelity.py (lead 4, moved 2 cm).
"""
import sys, time
import numpy as np, torch
from scipy.spatial.transform import Rotation
from vap_env.data import EpisodeDataset
torch.set_num_threads(1)
DIRS = ["data/f128_train_a", "data/f128_train_b", "data/f128_train_c-1", "data/f128_train_c-2"]

import os
from vap_env.kinematics import Robot
COMMANDED = os.environ.get("EE", "commanded") == "commanded"
NO_YAW = os.environ.get("YAW", "true") == "none"
ROBOT = Robot("panda")

def load(dirs):
    out = []
    for d in dirs:
        ds = EpisodeDataset(d)
        for i in range(len(ds)):
            e = ds[i]
            ee = np.stack([ROBOT.ee_pose(q)[0] for q in e.commanded_joints]) if COMMANDED else e.ee_position
            out.append((ee.astype(np.float64), e.commanded_gripper.astype(np.float64),
                        e.object_poses.astype(np.float64), e.policy, e.seed))
    return out

def yaw_of(q):
    if NO_YAW:
        return np.zeros(len(q))
    m = Rotation.from_quat(q).as_matrix()
    return np.arctan2(m[:, 1, 0], m[:, 0, 0])

def wrap90(a):
    return (a + np.pi / 4) % (np.pi / 2) - np.pi / 4

def rot(v, a):
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)

def features(ee0, ee1, g1, cube_xy, yaw):
    y = wrap90(yaw)
    r = rot(ee0[..., :2] - cube_xy, -y)
    m = rot(ee1[..., :2] - ee0[..., :2], -y)
    return np.concatenate([r * 10, m * 50, ee0[..., 2:3] * 10, ee1[..., 2:3] * 10, g1[..., None]], -1), y

def transitions(eps):
    X, Y, W = [], [], []
    for ee, g, obj, _, _ in eps:
        yaw = yaw_of(obj[:, 3:7])
        f, y = features(ee[:-1], ee[1:], g[1:], obj[:-1, :2], yaw[:-1])
        d = rot(obj[1:, :2] - obj[:-1, :2], -y) * 50
        dy = wrap90(yaw[1:] - yaw[:-1])[:, None] * 5
        X.append(f); Y.append(np.concatenate([d, dy], -1))
        W.append((np.linalg.norm(obj[1:, :2] - obj[:-1, :2], axis=1) >= 0.002).astype(float))
    return [torch.tensor(np.concatenate(a), dtype=torch.float32) for a in (X, Y, W)]

def step(net, ee0, ee1, g1, xy, yaw):
    f, y = features(ee0, ee1, g1, xy, yaw)
    with torch.no_grad():
        out = net(torch.tensor(f, dtype=torch.float32)[None])[0].numpy().astype(np.float64)
    return xy + rot(out[:2] / 50, y), yaw + out[2] / 5

t0 = time.time()
train, held = load(DIRS), load(["data/f128_heldout"])
X, Y, W = transitions(train); Xh, Yh, Wh = transitions(held)
print(f"ee {'commanded FK' if COMMANDED else 'achieved'}, yaw {'none' if NO_YAW else 'true'}")
print(f"{len(X)} train transitions ({W.mean():.1%} moving), {len(Xh)} held out; load {time.time()-t0:.0f} s")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                          torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 3))
opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
g = torch.Generator().manual_seed(0)
t0 = time.time()
for s in range(steps):
    i = torch.randint(0, len(X), (512,), generator=g)
    loss = ((net(X[i]) - Y[i]) ** 2).sum(-1).mul(1 + 3 * W[i]).mean()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if s % 1000 == 0 or s == steps - 1:
        with torch.no_grad():
            mv = Wh > 0
            err = (net(Xh[mv]) - Yh[mv])[:, :2].norm(dim=-1).mean().item() / 50
            zero = Yh[mv][:, :2].norm(dim=-1).mean().item() / 50
        print(f"step {s}: loss {loss.item():.4f}; held-out moving transitions: one-step error {err*1000:.2f} mm "
              f"(zero motion {zero*1000:.2f} mm)")
print(f"training {time.time()-t0:.0f} s")
net.eval()
H, LEAD = 16, 4
errs, reps, along = [], [], []
for ee, gr, obj, pol, seed in held:
    travel = np.linalg.norm(obj[:, :2] - obj[0, :2], axis=1)
    if len(obj) - 1 < H or not (travel >= 0.005).any():
        continue
    s0 = max(0, min(int(np.argmax(travel >= 0.005)) - LEAD, len(obj) - 1 - H))
    if np.linalg.norm(obj[s0 + H, :2] - obj[s0, :2]) < 0.02:
        continue
    yaw = yaw_of(obj[:, 3:7])
    xy, a = obj[s0, :2].copy(), yaw[s0]
    for t in range(s0, s0 + H):
        xy, a = step(net, ee[t], ee[t + 1], gr[t + 1], xy, a)
    true = obj[s0 + H, :2]
    errs.append(np.linalg.norm(xy - true)); reps.append(np.linalg.norm(obj[s0, :2] - true))
    d = true - obj[s0, :2]
    along.append(np.dot(xy - obj[s0, :2], d) / np.dot(d, d))
print(f"{len(errs)} contact windows: centre error at {H}: learned push {np.mean(errs)*100:.2f} cm, repeat "
      f"{np.mean(reps)*100:.2f} cm; along-push share {np.mean(along):.2f}; median error {np.median(errs)*100:.2f} cm")
torch.save(net.state_dict(), "push/pushmlp.pt")
