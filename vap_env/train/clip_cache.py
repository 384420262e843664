"""A disk cache of what training clips render from an episode: its prompts and motion-compensated frames.

Rendering them is most of a training run's set-up: with a ``hull`` prompt and a warped context, about 26 ms
a 128x128 frame on this project's CPU, some 18 of the 25 minutes that the 41k-frame push data took to set
up (encoding every frame with the codec took about 4); read back from this cache, 0.4 ms a frame. They are
the same for every run on the same episodes with the same prompt kind, so a second experiment, or a resumed
one, need not draw them again.

Each episode's arrays are one ``.npz`` file named by a hash of everything they are computed from: the
episode's frames, commanded states and camera, the robot, the prompt kind, whether the warped frames are
wanted, and the source of the code that renders them (``vap_env/prompts``, the kinematics, the camera, the
robot descriptions) and PyBullet's version, so an edit to that code, or other data, misses rather than
reading stale arrays. Nothing is ever read by name alone. Files are written atomically (a temporary file,
then a rename), so processes sharing a cache, or a run killed mid-write, leave only whole files.

The cache lives in ``$VAP_ENV_CACHE/clips`` (default ``~/.cache/vap-env/clips``), as Hugging Face datasets
keep their processed arrays; delete the directory to reclaim the space (compressed, about 3 kB a 128x128
frame of the push data with a warped context: the prompts and the simulator's flat colours pack well).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from vap_env.data import Episode

CACHE_ENV = "VAP_ENV_CACHE"
"""Environment variable naming the cache's root directory (default ``~/.cache/vap-env``)."""

_RENDERING_CODE = ("prompts", "robots", "kinematics.py", "camera.py")
"""The parts of the package (under ``vap_env/``) whose source decides what the cached arrays hold."""


def default_cache_dir() -> Path:
    """``$VAP_ENV_CACHE/clips``, or ``~/.cache/vap-env/clips`` when the variable is unset."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vap-env"
    return Path(root) / "clips"


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """A hash of the rendering code's source files and PyBullet's version (computed once per process)."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=16)
    for part in _RENDERING_CODE:
        path = package / part
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and file.suffix in (".py", ".toml"):
                digest.update(str(file.relative_to(package)).encode())
                digest.update(file.read_bytes())
    digest.update(importlib.metadata.version("pybullet").encode())
    return digest.hexdigest()


def episode_key(episode: Episode, prompt: str, warp: str) -> str:
    """The cache key of ``episode``'s prompts of kind ``prompt`` and its warped frames, ``warp`` naming
    what they move (``none``: no warped frames; ``robot``; ``robot+object``)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_code_fingerprint().encode())
    digest.update(f"{episode.robot}|{prompt}|{warp}".encode())
    camera = episode.camera
    for array in (
        episode.frames,
        episode.object_poses,
        episode.object_mask,
        episode.commanded_joints,
        episode.commanded_gripper,
        camera.intrinsics,
        camera.extrinsics,
        np.array([camera.width, camera.height, camera.near, camera.far], dtype=np.float64),
    ):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


class ClipCache:
    """Per-episode arrays on disk, by :func:`episode_key`.

    Args:
        root: The directory (created on the first write); ``None``: :func:`default_cache_dir`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or ``None`` if there are none (or not all of ``names``, or the
        file is unreadable: it is then computed and written again)."""
        path = self.path(key)
        try:
            with np.load(path) as stored:
                arrays = {name: stored[name] for name in names}
        except (FileNotFoundError, KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile):
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Stores ``arrays`` under ``key``, atomically."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
