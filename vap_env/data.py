"""Episode storage: what recording writes and training reads.

Format — a directory::

    DIR/
      meta/info.json              dataset summary: robot, task, image size, fps, features, one entry per episode
      episodes/episode_000000.npz one compressed NumPy archive per episode

Why NumPy ``.npz`` rather than LeRobot's parquet + mp4: frames and segmentation masks must round-trip
bit-exactly (training targets and ST-IoU ground truth; mp4 is lossy), every array opens with plain NumPy
(``np.load``) and needs no extra dependency, an archive is self-contained per episode so a damaged file
damages one episode, and zip's CRC-32 turns silent corruption into a read error. Feature names follow
LeRobot's conventions (``observation.images.camera``, ``observation.state``, ``action``) in ``info.json``
so the layout is familiar. Every file is written to ``*.tmp`` and renamed, so a killed recording never
leaves a half-written episode or index.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vap_env.camera import Camera

FORMAT_VERSION = 1
INFO_PATH = Path("meta") / "info.json"


class DatasetError(ValueError):
    """A dataset file is missing, truncated or corrupt; the message names the file."""


@dataclass
class Episode:
    """One recorded episode (T frames, T - 1 actions).

    Args:
        frames: (T, H, W, 3) uint8 camera images.
        joints: (T, J) float32 achieved (measured) arm joint positions.
        gripper: (T,) float32 achieved gripper openness in [0, 1].
        commanded_joints: (T, J) float32 commanded joint positions — prompts are rendered from these.
        commanded_gripper: (T,) float32 commanded gripper openness.
        ee_position: (T, 3) float32 achieved tool-centre-point position (m).
        actions: (T - 1, A) float32 actions; action t leads from frame t to frame t + 1.
        rewards: (T - 1,) float32 rewards.
        object_poses: (T, 7) float32 object position + quaternion (xyzw); zeros where the task has no object.
        goal: (3,) float32 goal position.
        robot_mask: (T, H, W) bool robot segmentation.
        object_mask: (T, H, W) bool object segmentation.
        success: Whether the task was solved during the episode.
        camera: The camera the frames were seen from.
        robot: Robot name (a ``robots/`` description).
        task: Task name.
        action_mode: The env's action mode (``ee_delta`` or ``joint_delta``).
        seed: The reset seed (reproduces the initial state in the simulator).
        policy: The policy spec that acted.
    """

    frames: np.ndarray
    joints: np.ndarray
    gripper: np.ndarray
    commanded_joints: np.ndarray
    commanded_gripper: np.ndarray
    ee_position: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    object_poses: np.ndarray
    goal: np.ndarray
    robot_mask: np.ndarray
    object_mask: np.ndarray
    success: bool
    camera: Camera
    robot: str
    task: str
    action_mode: str = "ee_delta"
    seed: int = 0
    policy: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"`frames` must be uint8 (T, H, W, 3), got {self.frames.dtype} {self.frames.shape}"
            )
        per_frame = (
            "joints",
            "gripper",
            "commanded_joints",
            "commanded_gripper",
            "ee_position",
            "object_poses",
            "robot_mask",
            "object_mask",
        )
        for name in per_frame:
            if len(getattr(self, name)) != t:
                raise ValueError(
                    f"`{name}` must have {t} entries (one per frame), got {len(getattr(self, name))}"
                )
        for name in ("actions", "rewards"):
            if len(getattr(self, name)) != t - 1:
                raise ValueError(
                    f"`{name}` must have {t - 1} entries (one per transition), got {len(getattr(self, name))}"
                )

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def starting_at(self, step: int) -> Episode:
        """The episode from frame ``step`` on: its frames, states and actions from there, the rest kept.

        An open-loop replay of it starts imagination from that frame (``reset_mode="image"``), e.g. a few
        steps before the gripper reaches the cube. ``extra["start_step"]`` records ``step`` (added to an
        earlier one's).
        """
        if not 0 <= step < self.num_frames:
            raise ValueError(f"`step` must be in [0, {self.num_frames - 1}], got {step}")
        per_frame = {
            name: getattr(self, name)[step:]
            for name in _ARRAY_FIELDS
            if name not in ("goal", "actions", "rewards")
        }
        extra = dict(self.extra, start_step=int(self.extra.get("start_step", 0)) + step)
        return dataclasses.replace(
            self, **per_frame, actions=self.actions[step:], rewards=self.rewards[step:], extra=extra
        )

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


_ARRAY_FIELDS = (
    "frames",
    "joints",
    "gripper",
    "commanded_joints",
    "commanded_gripper",
    "ee_position",
    "actions",
    "rewards",
    "object_poses",
    "goal",
    "robot_mask",
    "object_mask",
)
_SCALAR_FIELDS = ("success", "robot", "task", "action_mode", "seed", "policy")


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_episode(path: str | Path, episode: Episode) -> None:
    """Write one episode as a compressed ``.npz``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(getattr(episode, name)) for name in _ARRAY_FIELDS}
    meta = {name: getattr(episode, name) for name in _SCALAR_FIELDS}
    meta["success"] = bool(meta["success"])
    meta["seed"] = int(meta["seed"])
    meta["camera"] = episode.camera.to_dict()
    meta["extra"] = episode.extra
    meta["format_version"] = FORMAT_VERSION
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _atomic_write_bytes(path, lambda f: np.savez_compressed(f, **arrays))


def load_episode(path: str | Path) -> Episode:
    """Read an episode written by :func:`save_episode`.

    Raises:
        DatasetError: the file is missing, truncated, corrupt, or lacks a field — the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"episode file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_ARRAY_FIELDS, "meta_json") if k not in z.files]
            if missing:
                raise DatasetError(
                    f"episode file {path} lacks fields {missing}; it was not written by vap-env "
                    "or is from an incompatible version"
                )
            data = {k: z[k] for k in _ARRAY_FIELDS}
            meta = json.loads(z["meta_json"].tobytes().decode())
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DatasetError(
            f"episode file {path} is truncated or corrupt ({type(e).__name__}: {e}); "
            "delete it and re-record it (`vap-env collect` resumes missing episodes)"
        ) from e
    try:
        return Episode(
            **data,
            camera=Camera.from_dict(meta["camera"]),
            extra=meta.get("extra", {}),
            **{k: meta[k] for k in _SCALAR_FIELDS},
        )
    except (KeyError, ValueError) as e:
        raise DatasetError(f"episode file {path} holds inconsistent data: {e}") from e


def _episode_summary(episode: Episode, filename: str) -> dict:
    return {
        "file": filename,
        "length": episode.num_frames,
        "success": bool(episode.success),
        "seed": int(episode.seed),
        "policy": episode.policy,
    }


class EpisodeDataset:
    """A recorded dataset directory: ``len()``, indexing and iteration give :class:`Episode` objects.

    Args:
        root: The directory written by :class:`DatasetWriter` / ``vap-env collect``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / INFO_PATH
        if not info_path.is_file():
            raise DatasetError(
                f"{self.root} is not a vap-env dataset: {info_path} does not exist "
                "(record one with `vap-env collect --out DIR`)"
            )
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DatasetError(f"dataset index {info_path} is corrupt ({e})") from e
        self.episodes: list[dict] = self.info.get("episodes", [])

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Episode:
        if not -len(self) <= index < len(self):
            raise IndexError(f"episode index {index} out of range for {len(self)} episodes in {self.root}")
        return load_episode(self.root / "episodes" / self.episodes[index]["file"])

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    @property
    def robot(self) -> str:
        return self.info["robot"]

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.info["image_size"])

    def summary(self) -> dict:
        """Episodes, frames, success rate, robot, task, image size, cameras, policies and the object's size
        in pixels (:meth:`object_pixel_size`)."""
        n = len(self)
        frames = sum(e["length"] for e in self.episodes)
        return {
            "path": str(self.root),
            "robot": self.robot,
            "task": self.task,
            "image_size": list(self.image_size),
            "camera": self.info.get("camera_mode"),
            "action_mode": self.info.get("action_mode"),
            "episodes": n,
            "frames": frames,
            "success_rate": (sum(e["success"] for e in self.episodes) / n) if n else float("nan"),
            "policies": sorted({e["policy"] for e in self.episodes}),
            "fps": self.info.get("fps"),
            "object_px": self.object_pixel_size(),
        }

    def object_pixel_size(self, max_episodes: int = 8) -> dict[str, float] | None:
        """How large the object (the cube) appears: the side in pixels of a square of its visible area.

        A world model can only learn contact it can see: at 64x64 with the default far camera the cube is
        about 4-5 px wide, one latent cell of a 4x codec. Read from the object masks of up to
        ``max_episodes`` episodes spread over the dataset (all their frames where the object is visible).

        Returns:
            ``{"median", "p10", "p90"}`` of that side over those frames, or ``None`` when no frame shows an
            object (reach, or an empty dataset).
        """
        if not self.episodes:
            return None
        picks = np.unique(np.linspace(0, len(self) - 1, min(max_episodes, len(self))).round().astype(int))
        areas = np.concatenate([self[int(i)].object_mask.sum(axis=(1, 2)) for i in picks])
        sides = np.sqrt(areas[areas > 0])
        if sides.size == 0:
            return None
        p10, median, p90 = np.percentile(sides, [10, 50, 90])
        return {"median": float(median), "p10": float(p10), "p90": float(p90)}


class DatasetWriter:
    """Appends episodes to a dataset directory, rewriting the index atomically after each one.

    Re-opening an existing directory continues it (a recording that was stopped resumes where it ended);
    opening one recorded with another robot, task or image size is refused.

    Args:
        root: Output directory.
        info: Dataset-level fields: robot, task, image_size, fps, action_mode, camera_mode, ...
    """

    def __init__(self, root: str | Path, info: dict) -> None:
        self.root = Path(root)
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        info_path = self.root / INFO_PATH
        if info_path.is_file():
            existing = EpisodeDataset(self.root).info
            for key in ("robot", "task", "image_size", "action_mode", "camera_mode"):
                if key in info and existing.get(key) != info[key]:
                    raise ValueError(
                        f"{self.root} already holds a dataset with {key}={existing.get(key)!r}, "
                        f"not {info[key]!r}; choose another --out directory"
                    )
            self.info = existing
        else:
            self.info = {
                "format": "vap-env-episodes",
                "format_version": FORMAT_VERSION,
                **info,
                "episodes": [],
                "features": _FEATURES,
            }
            self._write_info()

    @property
    def num_episodes(self) -> int:
        return len(self.info["episodes"])

    def recorded_seeds(self) -> set[int]:
        return {int(e["seed"]) for e in self.info["episodes"]}

    def add(self, episode: Episode) -> Path:
        """Write an episode file and update the index; returns the file path."""
        h, w = episode.image_size
        if [h, w] != list(self.info["image_size"]):
            raise ValueError(f"episode frames are {h}x{w}, the dataset's are {self.info['image_size']}")
        name = f"episode_{self.num_episodes:06d}.npz"
        path = self.root / "episodes" / name
        save_episode(path, episode)
        self.info["episodes"].append(_episode_summary(episode, name))
        self._write_info()
        return path

    def _write_info(self) -> None:
        data = json.dumps(self.info, indent=1).encode()
        _atomic_write_bytes(self.root / INFO_PATH, lambda f: f.write(data))


# LeRobot-style feature names, documenting which archive field carries which feature.
_FEATURES = {
    "observation.images.camera": {"field": "frames", "dtype": "uint8", "shape": "T,H,W,3"},
    "observation.state": {"field": "joints+gripper", "dtype": "float32", "shape": "T,J+1"},
    "action": {"field": "actions", "dtype": "float32", "shape": "T-1,A"},
    "commanded.state": {"field": "commanded_joints+commanded_gripper", "dtype": "float32", "shape": "T,J+1"},
    "observation.ee_position": {"field": "ee_position", "dtype": "float32", "shape": "T,3"},
    "next.reward": {"field": "rewards", "dtype": "float32", "shape": "T-1"},
    "object.pose": {"field": "object_poses", "dtype": "float32", "shape": "T,7"},
    "mask.robot": {"field": "robot_mask", "dtype": "bool", "shape": "T,H,W"},
    "mask.object": {"field": "object_mask", "dtype": "bool", "shape": "T,H,W"},
}

__all__ = ["Episode", "EpisodeDataset", "DatasetWriter", "DatasetError", "save_episode", "load_episode"]
