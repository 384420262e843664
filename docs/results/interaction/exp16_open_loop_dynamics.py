"""Experiment 16: an object dynamics rolled open loop over whole recorded episodes (the simulator's
commanded TCPs, 50 steps of its own predictions): final cube error, displacement, goal success (5 cm) by
the simulator and by the dynamics, per dataset ``data/diag_*`` (20 episodes of one policy each, recorded
with benchmarks/record_framed.py at seeds 200000+).

    python exp16_open_loop_dynamics.py MODEL_DIR/object_dynamics
"""

import glob
import sys

import numpy as np

from vap_env.data import EpisodeDataset
from vap_env.kinematics import Robot
from vap_env.model.object_dynamics import ObjectDynamics, commanded_tcps

dyn = ObjectDynamics.load(sys.argv[1])
robot = Robot("panda")
for d in sorted(glob.glob("data/diag_*")):
    rows = []
    for e in EpisodeDataset(d):
        tcp = commanded_tcps(e, robot)
        xy = e.object_poses[0, :2].astype(float)[None]
        track = [xy[0]]
        for t in range(len(tcp) - 1):
            xy = dyn.step(xy, tcp[t : t + 1], tcp[t + 1 : t + 2], e.commanded_gripper[t + 1 : t + 2])
            track.append(xy[0])
        track = np.array(track)
        true = e.object_poses[:, :2]
        goal = e.goal[:2] if e.goal.ndim == 1 else e.goal[-1, :2]
        rows.append(
            (
                np.linalg.norm(track[-1] - true[-1]),
                np.linalg.norm(true[-1] - true[0]),
                np.linalg.norm(track[-1] - track[0]),
                np.linalg.norm(true[-1] - goal) < 0.05,
                np.linalg.norm(track[-1] - goal) < 0.05,
                e.success,
            )
        )
    r = np.array(rows, float)
    print(
        f"{d[10:]:40s} final err {100 * r[:, 0].mean():5.1f} cm  disp sim {100 * r[:, 1].mean():5.1f} "
        f"dyn {100 * r[:, 2].mean():5.1f}  success sim {r[:, 3].mean():.2f} ({r[:, 5].mean():.2f}) "
        f"dyn {r[:, 4].mean():.2f}"
    )
