"""stable-baselines3 checkpoints as policies: the ``sb3:`` source and :class:`SB3Policy`.

Spec: ``sb3:PATH.zip[,algo=ALGO][,deterministic=true|false][,device=DEVICE]``.

- ``PATH.zip``: a checkpoint written by ``model.save`` (the ``.zip`` may be left off, as SB3 allows).
- ``algo``: one of :data:`ALGORITHMS`. By default it is read from the checkpoint's ``data`` JSON without
  unpickling anything: the module of the saved policy class tells the family (``sac.policies`` -> SAC,
  ``td3.policies`` -> TD3 or DDPG, ``dqn.policies`` -> DQN, ``common.policies`` -> PPO or A2C) and the saved
  hyperparameters the member (only PPO has a ``clip_range``; DDPG is TD3 with ``policy_delay=1`` and no
  target noise). SB3 itself does not record the algorithm; a custom policy class or an ``sb3_contrib``
  algorithm needs ``algo=``.
- ``deterministic``: ``model.predict(..., deterministic=)``; default ``true``. Stochastic actions draw from
  the policy's own seeded torch stream (``reset(seed)``), not from torch's global one.
- ``device``: where the network runs; default ``cpu`` (observations come as numpy, SB3 nets are small, and
  the GPU stays free for the world model).

The model's observation space is matched against the env's: a model trained on ``obs_mode="state"`` in an
env with ``obs_mode="both"`` gets ``obs["state"]``; an image model gets the env's HWC uint8 image, which
``model.predict`` transposes to the CHW its ``VecTransposeImage`` saw in training; a Dict model gets its keys.

Trust: loading a checkpoint unpickles parts of it (stable-baselines3 warns about this), which can run
arbitrary code: load only checkpoints you trust.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vap_env.policies.base import PolicyError

ALGORITHMS = ("PPO", "A2C", "SAC", "TD3", "DDPG", "DQN")
"""The stable-baselines3 algorithms ``algo=`` names."""

# Entries replaced on load: only ``predict`` is used, so the schedules (pickled closures that break across
# Python versions, as the RL Zoo notes) become constants and an off-policy replay buffer holds one row.
_INFERENCE_OBJECTS = {"learning_rate": 0.0, "lr_schedule": 0.0, "clip_range": 0.0, "buffer_size": 1}


class SB3Policy:
    """A stable-baselines3 model as a :class:`~vap_env.policies.base.Policy` and a ``BatchPolicy``.

    Args:
        model: A loaded SB3 algorithm (``PPO.load(...)``); anything with SB3's ``predict``,
            ``observation_space`` and ``action_space`` will do.
        observation_space: The env's (single) observation space; the part the model observes is fed.
        deterministic: Passed to ``model.predict``.
        name: The policy's name, for error messages.

    Raises:
        PolicyError: The env's observations have no part the model observes, or the action spaces differ.
    """

    def __init__(
        self,
        model: Any,
        observation_space: spaces.Space,
        deterministic: bool = True,
        name: str = "sb3",
    ) -> None:
        self.model, self.deterministic, self.name = model, bool(deterministic), name
        try:
            self._select = observation_selector(model.observation_space, observation_space)
        except ValueError as e:
            raise PolicyError(name, str(e)) from None
        self._stream = _TorchStream(getattr(model, "device", "cpu"))

    def check_action_space(self, action_space: spaces.Space) -> None:
        """Raises a :class:`PolicyError` unless the model's action space is ``action_space``."""
        ours = self.model.action_space
        same = (
            isinstance(ours, spaces.Box)
            and isinstance(action_space, spaces.Box)
            and ours.shape == action_space.shape
            and np.allclose(ours.low, action_space.low)
            and np.allclose(ours.high, action_space.high)
        )
        if not same and ours != action_space:
            raise PolicyError(
                self.name,
                f"the SB3 model acts in {describe_space(ours)}, but the env's action space is "
                f"{describe_space(action_space)}: train it on "
                "an env with this robot and action_mode",
            )

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._stream.seed(seed)

    def act(self, obs: Any) -> np.ndarray:
        return self._predict(obs)

    def reset_batch(self, seeds: list[int]) -> None:
        # one stream for the batch (one predict draws all rows): the same seeds give the same actions
        self._stream.seed(int(np.random.SeedSequence([int(s) for s in seeds]).generate_state(1)[0]))

    def act_batch(self, obs: Any) -> np.ndarray:
        return self._predict(obs)

    def _predict(self, obs: Any) -> np.ndarray:
        part = self._select(obs)
        if self.deterministic:  # no draws: skip forking torch's generator
            return self.model.predict(part, deterministic=True)[0]
        with self._stream.draws():
            return self.model.predict(part, deterministic=False)[0]

    def __repr__(self) -> str:
        return f"SB3Policy({type(self.model).__name__}, deterministic={self.deterministic})"


def load_sb3(args: str, env: gym.Env) -> SB3Policy:
    """The builder of the ``sb3:`` kind (see the module docstring): ``args`` is ``PATH[,KEY=VALUE...]``.

    Raises:
        PolicyError: No such file, an unreadable checkpoint, an unknown or wrong ``algo``, or spaces that
            do not fit the env.
    """
    from vap_env.policies.factory import boolean, parse_kwargs

    spec = f"sb3:{args}"
    target, _, rest = args.partition(",")
    try:
        options = parse_kwargs(rest, {"algo": str, "deterministic": boolean, "device": str})
    except ValueError as e:
        raise PolicyError(spec, str(e)) from None
    path = checkpoint_path(target.strip(), spec)
    algo = options.get("algo", "").upper() or read_algorithm(path, spec)
    if algo not in ALGORITHMS:
        raise PolicyError(spec, f"unknown algo={options['algo']!r}; valid: {', '.join(ALGORITHMS)}")
    model = _load(path, algo, options.get("device", "cpu"), spec)
    policy = SB3Policy(model, env.observation_space, options.get("deterministic", True), name=spec)
    policy.check_action_space(env.action_space)
    return policy


def checkpoint_path(text: str, spec: str) -> Path:
    """The checkpoint file ``text`` names (``.zip`` may be left off), or a :class:`PolicyError`."""
    if not text:
        raise PolicyError(spec, "no checkpoint given: write sb3:PATH.zip")
    path = Path(text).expanduser()
    if not path.is_file() and path.suffix != ".zip" and path.with_name(path.name + ".zip").is_file():
        path = path.with_name(path.name + ".zip")
    if not path.is_file():
        raise PolicyError(
            spec, f"no such file {str(path)!r}: give the path of a stable-baselines3 checkpoint (model.save)"
        )
    return path


def read_algorithm(path: Path, spec: str) -> str:
    """The algorithm that wrote checkpoint ``path``, from its ``data`` JSON (nothing is unpickled).

    Raises:
        PolicyError: ``path`` is not an SB3 checkpoint, or its policy class is none of SB3's own.
    """
    data = _read_data(path, spec)
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    found = re.search(r"<function (\w+)\.__init__", str(policy_class))
    family = module.removeprefix("stable_baselines3.").removesuffix(".policies")
    algo = None
    if family == "common":
        algo = "PPO" if "clip_range" in data else "A2C"
    elif family == "td3":
        ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0
        algo = "DDPG" if ddpg else "TD3"
    elif family in ("sac", "dqn"):
        algo = family.upper()
    if algo is None or not module.startswith("stable_baselines3."):
        cls = f"{module}.{found.group(1)}" if found else (module or "unknown")
        raise PolicyError(
            spec,
            f"cannot tell the algorithm of {str(path)!r} from its policy class {cls}: give it, "
            f"sb3:{path},algo=NAME with NAME one of {', '.join(ALGORITHMS)}",
        )
    return algo


def _read_data(path: Path, spec: str) -> dict[str, Any]:
    unreadable = f"unreadable checkpoint {str(path)!r}:"
    hint = "give the .zip a stable-baselines3 model.save wrote"
    if not zipfile.is_zipfile(path):
        raise PolicyError(spec, f"{unreadable} not a zip file; {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode())
    except KeyError:
        raise PolicyError(spec, f"{unreadable} the zip has no `data` entry; {hint}") from None
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyError(spec, f"{unreadable} its `data` is not SB3's JSON ({e}); {hint}") from e
    if not isinstance(data, dict):
        raise PolicyError(spec, f"{unreadable} its `data` is not SB3's JSON object; {hint}")
    return data


def _load(path: Path, algo: str, device: str, spec: str) -> Any:
    import stable_baselines3

    _read_data(path, spec)  # a zip that is no checkpoint fails here with the clear message
    try:
        return getattr(stable_baselines3, algo).load(path, device=device, custom_objects=_INFERENCE_OBJECTS)
    except Exception as e:  # SB3 raises anything from KeyError to pickle errors on a foreign file
        raise PolicyError(
            spec,
            f"cannot load {str(path)!r} as {algo} ({type(e).__name__}: {e}); is it a {algo} checkpoint? "
            f"Give its algorithm with algo= (one of {', '.join(ALGORITHMS)})",
        ) from e


def observation_selector(model_space: spaces.Space, env_space: spaces.Space) -> Callable[[Any], Any]:
    """The function picking, from an env observation (one or a batch), the part the model observes.

    A ``Box`` model observes the env's ``Box``, or the one entry of a ``Dict`` env that fits it; a ``Dict``
    model observes the env's entries of its keys. An image fits in the same shape or as the HWC of the
    model's CHW (SB3's ``predict`` transposes it).

    Raises:
        ValueError: No part fits; the message names both spaces.
    """
    if isinstance(model_space, spaces.Dict):
        if isinstance(env_space, spaces.Dict) and all(
            k in env_space.spaces and _fits(s, env_space[k]) for k, s in model_space.spaces.items()
        ):
            keys = list(model_space.spaces)
            return lambda obs: {k: obs[k] for k in keys}
    elif isinstance(env_space, spaces.Dict):
        fitting = [k for k, s in env_space.spaces.items() if _fits(model_space, s)]
        if len(fitting) == 1:
            key = fitting[0]
            return lambda obs: obs[key]
    elif _fits(model_space, env_space):
        return lambda obs: obs
    raise ValueError(
        f"the SB3 model observes {describe_space(model_space)}, but the env's observations are "
        f"{describe_space(env_space)}, with no part "
        "that fits: evaluate in an env with the obs_mode, image_size and task it was trained on"
    )


def describe_space(space: spaces.Space) -> str:
    """A one-line ``space``: ``Box(0, 255, (36, 36, 3), uint8)``; a Box with per-entry bounds as ``Box((14,),
    float32)``; a Dict as ``Dict(image: ..., state: ...)``."""
    if isinstance(space, spaces.Dict):
        return f"Dict({', '.join(f'{k}: {describe_space(v)}' for k, v in space.spaces.items())})"
    if isinstance(space, spaces.Box) and not (
        np.all(space.low == space.low.flat[0]) and np.all(space.high == space.high.flat[0])
    ):
        return f"Box({space.shape}, {space.dtype})"
    return str(space)


def _fits(model_space: spaces.Space, env_space: spaces.Space) -> bool:
    if not (isinstance(model_space, spaces.Box) and isinstance(env_space, spaces.Box)):
        return False
    from stable_baselines3.common.preprocessing import is_image_space

    model_image, env_image = is_image_space(model_space), is_image_space(env_space)
    if model_image != env_image:
        return False
    if env_space.shape == model_space.shape:
        return True
    c, h, w = model_space.shape if model_image else (0, 0, 0)
    return model_image and env_space.shape == (h, w, c)  # the env's HWC of the CHW the model trained on


class _TorchStream:
    """A seeded random stream of its own for SB3's sampling, which draws from torch's global generator.

    Each draw runs in ``torch.random.fork_rng`` with the stream's state swapped in, so a policy's seed
    replays its actions and its draws leave the global generator (and the world model's sampling) alone.
    """

    def __init__(self, device: Any) -> None:
        import torch

        device = torch.device(device)
        self._cuda = [device.index or 0] if device.type == "cuda" else []
        self._state: tuple[Any, list[Any]] | None = None

    def seed(self, seed: int) -> None:
        import torch

        with torch.random.fork_rng(devices=self._cuda):
            torch.manual_seed(seed)
            self._state = self._get()

    @contextlib.contextmanager
    def draws(self) -> Iterator[None]:
        import torch

        with torch.random.fork_rng(devices=self._cuda):
            if self._state is None:
                torch.seed()  # unseeded: a fresh stream, as RandomPolicy(seed=None)
            else:
                torch.set_rng_state(self._state[0])
                for d, state in zip(self._cuda, self._state[1], strict=True):
                    torch.cuda.set_rng_state(state, d)
            yield
            self._state = self._get()

    def _get(self) -> tuple[Any, list[Any]]:
        import torch

        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self._cuda]
