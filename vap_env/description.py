"""Robot descriptions: the data files in ``robots/`` parsed into typed, validated dataclasses.

A description says everything vap-env needs about an embodiment — which model file to load, which
joints are the arm and which the gripper, how gripper openness maps to joint positions, which points
to draw as the skeleton and in which colours, the home pose and the default camera. Adding a robot means
adding a ``.toml`` file to ``robots/`` (or passing a path); no code changes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROBOTS_DIR = Path(__file__).resolve().parent / "robots"


@dataclass(frozen=True)
class Keypoint:
    """A point drawn in the skeleton.

    Args:
        name: Unique name within the robot.
        link: Link whose frame carries the point (for arms), or ``None`` for free keypoints (hands).
        offset: Position in the link frame, metres.
    """

    name: str
    link: str | None = None
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Bone:
    """A segment between two keypoints, drawn in ``color`` (RGB). ``gripper`` bones show openness."""

    start: int
    end: int
    color: tuple[int, int, int]
    gripper: bool = False


@dataclass(frozen=True)
class SkeletonGraph:
    """What a skeleton renderer needs to know about a robot: keypoint names, bones and colours."""

    keypoint_names: tuple[str, ...]
    bones: tuple[Bone, ...]

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) int array of keypoint indices."""
        return np.array([(b.start, b.end) for b in self.bones], dtype=np.int64).reshape(-1, 2)

    @property
    def colors(self) -> np.ndarray:
        """(E, 3) uint8 array of RGB bone colours."""
        return np.array([b.color for b in self.bones], dtype=np.uint8).reshape(-1, 3)


@dataclass(frozen=True)
class GripperSpec:
    """Gripper joints and the linear map from openness in [0, 1] (0 closed, 1 open) to their positions."""

    joints: tuple[str, ...]
    open: tuple[float, ...]
    closed: tuple[float, ...]

    def joint_positions(self, openness: float) -> np.ndarray:
        o = min(max(float(openness), 0.0), 1.0)  # not np.clip: this runs several times per simulator step
        return self._closed + o * self._span

    def openness(self, positions: np.ndarray) -> float:
        """Inverse of :meth:`joint_positions` (least squares over the joints), clipped to [0, 1]."""
        o = float(np.dot(np.asarray(positions) - self._closed, self._span) / max(self._span_sq, 1e-12))
        return min(max(o, 0.0), 1.0)

    @cached_property
    def _closed(self) -> np.ndarray:
        return np.asarray(self.closed, dtype=np.float64)

    @cached_property
    def _span(self) -> np.ndarray:
        return np.asarray(self.open, dtype=np.float64) - self._closed

    @cached_property
    def _span_sq(self) -> float:
        return float(np.dot(self._span, self._span))


@dataclass(frozen=True)
class CameraSpec:
    """Default camera as orbit parameters around a target point (PyBullet debug-camera convention)."""

    target: tuple[float, float, float]
    distance: float
    yaw: float
    pitch: float
    fov: float = 45.0


@dataclass(frozen=True)
class RobotDescription:
    """A parsed ``robots/*.toml`` file. See ``robots/panda.toml`` for every field, commented."""

    name: str
    display_name: str
    kind: str
    keypoints: tuple[Keypoint, ...]
    graph: SkeletonGraph
    camera: CameraSpec
    model: str | None = None
    source: Path | None = None
    base_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    arm_joints: tuple[str, ...] = ()
    home: tuple[float, ...] = ()
    ee_link: str | None = None
    ee_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ee_down_euler: tuple[float, float, float] = (np.pi, 0.0, 0.0)
    gripper: GripperSpec | None = None
    workspace_x: tuple[float, float] = (0.35, 0.65)
    workspace_y: tuple[float, float] = (-0.2, 0.2)
    extra: dict = field(default_factory=dict)

    @property
    def num_arm_joints(self) -> int:
        return len(self.arm_joints)

    def model_path(self) -> str:
        """Absolute path of the URDF/SDF: relative to this file if it exists there, else inside pybullet_data."""
        if self.model is None:
            raise ValueError(f"robot {self.name!r} ({self.kind}) has no kinematic model file")
        candidates = [Path(self.model)]
        if self.source is not None:
            candidates.append(self.source.parent / self.model)
        import pybullet_data

        candidates.append(Path(pybullet_data.getDataPath()) / self.model)
        for c in candidates:
            if c.is_file():
                return str(c)
        raise FileNotFoundError(
            f"robot {self.name!r}: model file {self.model!r} not found (looked in: {', '.join(map(str, candidates))})"
        )


def list_robots() -> list[str]:
    """Names of the robots shipped in ``robots/``, sorted."""
    return sorted(p.stem for p in ROBOTS_DIR.glob("*.toml"))


def load_description(name_or_path: str | Path) -> RobotDescription:
    """Load a robot description by name (``"panda"``) or by path to a ``.toml`` file.

    Raises:
        ValueError: unknown robot name (the message lists the known ones) or an invalid file.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = ROBOTS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise ValueError(f"unknown robot {str(name_or_path)!r}; known robots: {', '.join(list_robots())}")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read robot description {path}: {e}") from e
    return _parse(raw, path)


def _parse(raw: dict, path: Path) -> RobotDescription:
    def req(key: str):
        if key not in raw:
            raise ValueError(f"robot description {path}: missing required field `{key}`")
        return raw[key]

    kind = req("kind")
    if kind not in ("arm", "hand"):
        raise ValueError(f"robot description {path}: `kind` must be 'arm' or 'hand', got {kind!r}")
    keypoints = tuple(
        Keypoint(name=k["name"], link=k.get("link"), offset=tuple(k.get("offset", (0.0, 0.0, 0.0))))
        for k in req("keypoints")
    )
    names = [k.name for k in keypoints]
    if len(set(names)) != len(names):
        raise ValueError(f"robot description {path}: keypoint names must be unique, got {names}")
    index = {n: i for i, n in enumerate(names)}
    bones = []
    for b in req("bones"):
        for end in ("from", "to"):
            if b[end] not in index:
                raise ValueError(
                    f"robot description {path}: bone end {b[end]!r} is not a keypoint; keypoints: {names}"
                )
        bones.append(
            Bone(
                index[b["from"]],
                index[b["to"]],
                tuple(int(c) for c in b["color"]),
                bool(b.get("gripper", False)),
            )
        )
    cam = req("camera")
    gripper = None
    if "gripper" in raw:
        g = raw["gripper"]
        gripper = GripperSpec(
            tuple(g["joints"]), tuple(float(v) for v in g["open"]), tuple(float(v) for v in g["closed"])
        )
        if not (len(gripper.joints) == len(gripper.open) == len(gripper.closed)):
            raise ValueError(
                f"robot description {path}: gripper joints/open/closed must have the same length"
            )
    arm_joints = tuple(raw.get("arm_joints", ()))
    home = tuple(float(v) for v in raw.get("home", ()))
    if kind == "arm":
        for key in ("model", "arm_joints", "home", "ee_link"):
            req(key)
        if len(home) != len(arm_joints):
            raise ValueError(
                f"robot description {path}: `home` has {len(home)} values for {len(arm_joints)} arm joints"
            )
    known = {
        "name", "display_name", "kind", "model", "base_position", "arm_joints", "home", "ee_link",
        "ee_offset", "ee_down_euler", "workspace_x", "workspace_y", "gripper", "keypoints", "bones", "camera",
    }  # fmt: skip
    return RobotDescription(
        name=str(raw.get("name", path.stem)),
        display_name=str(raw.get("display_name", path.stem)),
        kind=kind,
        keypoints=keypoints,
        graph=SkeletonGraph(tuple(names), tuple(bones)),
        camera=CameraSpec(
            tuple(cam["target"]),
            float(cam["distance"]),
            float(cam["yaw"]),
            float(cam["pitch"]),
            float(cam.get("fov", 45.0)),
        ),
        model=raw.get("model"),
        source=path,
        base_position=tuple(raw.get("base_position", (0.0, 0.0, 0.0))),
        arm_joints=arm_joints,
        home=home,
        ee_link=raw.get("ee_link"),
        ee_offset=tuple(float(v) for v in raw.get("ee_offset", (0.0, 0.0, 0.0))),
        ee_down_euler=tuple(raw.get("ee_down_euler", (np.pi, 0.0, 0.0))),
        gripper=gripper,
        workspace_x=tuple(raw.get("workspace_x", (0.35, 0.65))),
        workspace_y=tuple(raw.get("workspace_y", (-0.2, 0.2))),
        extra={k: v for k, v in raw.items() if k not in known},
    )
