"""Anything a person calls a policy, as a checked policy for an env: :func:`as_policy`, and the ``py:`` kind.

Sources :func:`as_policy` takes:

- a spec string (``make_policy``'s kinds: ``scripted``, ``random``, ``sb3:PATH.zip``, ``py:MODULE:NAME``),
  optionally named: ``NAME=SPEC`` (:func:`split_named`);
- a policy object (it has ``reset`` and ``act``, or ``reset_batch`` and ``act_batch``);
- a policy class, or a factory ``(env) -> policy``, called with the env;
- a plain function ``obs -> action``, wrapped in :class:`FunctionPolicy`.

A callable is a factory when its first parameter is named ``env`` or annotated as an env; any other
one-argument callable is an ``obs -> action`` function. The ``py:`` kind names one of these in Python code:
``py:MODULE:NAME`` (an importable module) or ``py:path/to/file.py:NAME``, optionally followed by
``,KEY=VALUE`` arguments, passed as keyword arguments to the class or factory (or to the function on every
call); values read as int, float, ``true``/``false``, else text.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from vap_env.policies.base import BatchPolicy, Policy, PolicyError, is_batch_policy
from vap_env.policies.checked import CheckedPolicy, checked

PolicySource = str | Policy | BatchPolicy | type | Callable[..., Any]
"""What :func:`as_policy` turns into a policy."""

ACCEPTED = (
    "a Policy class, a factory (env) -> Policy, a policy object (reset/act), or a function obs -> action"
)


def split_named(spec: str) -> tuple[str, str]:
    """``"mine=sb3:ppo.zip"`` -> ``("mine", "sb3:ppo.zip")``; a spec without a name is its own name.

    A name is the text before an ``=`` that comes before any ``:``, so the ``KEY=VALUE`` arguments of a spec
    are never taken for one: ``"scripted:noise=0.2"`` has no name, ``"fast=scripted:noise=0.2"`` has.

    Raises:
        ValueError: An empty name or an empty spec after it (``"=random"``, ``"mine="``).
    """
    spec = spec.strip()
    head, sep, rest = spec.partition("=")
    if not sep or ":" in head:
        return spec, spec
    name, rest = head.strip(), rest.strip()
    if not name or not rest:
        raise ValueError(f"bad named policy spec {spec!r}: write NAME=SPEC, e.g. mine=sb3:ppo_reach.zip")
    return name, rest


def as_policy(source: PolicySource, env: Any, name: str | None = None) -> CheckedPolicy:
    """``source`` (see the module docstring) as a policy for ``env``, its actions checked, named ``name``.

    The result is a :class:`~vap_env.policies.checked.CheckedPolicy`, and also a
    :class:`~vap_env.policies.base.BatchPolicy` (a ``CheckedBatchPolicy``) when the source's policy is one:
    test with :func:`~vap_env.policies.base.is_batch_policy`.

    Args:
        source: A spec string, a policy, a policy class or factory, or an ``obs -> action`` function.
        env: The env it acts in (a Gymnasium env, or a single-env view of a vector env: ``action_space``,
            ``observation_space`` and ``unwrapped.interface``).
        name: The name errors and reports use; default: a string source's ``NAME=`` or the spec itself, an
            object's ``__name__`` or class name.

    Raises:
        PolicyError: The source cannot be loaded or is not a policy (the message names it and the fix).
        ValueError: An unknown spec kind or bad spec arguments (from ``make_policy``).
    """
    from vap_env.policies.factory import make_policy

    if isinstance(source, str):
        label, spec = split_named(source)
        label = name or label
        try:
            policy: Any = make_policy(spec, env)
        except PolicyError as e:
            if e.name == label:
                raise
            raise PolicyError(label, f"({spec}) {e.message}") from (e.__cause__ or e)
    else:
        label = name or _object_name(source)
        policy = from_object(source, env, {}, label)
    return checked(policy, env.action_space, label)


def as_batch_policy(source: PolicySource, env: Any, num_envs: int, name: str | None = None) -> BatchPolicy:
    """``source`` as one :class:`~vap_env.policies.base.BatchPolicy` for ``num_envs`` sub-envs.

    A batched source (an SB3 checkpoint) acts for all in one call; any other gets one policy per sub-env
    (built anew from a spec, class or factory; deep copies of a policy object), stacked by
    :class:`StackedPolicies`. ``env`` is the single-env view, as for :func:`as_policy`.
    """
    first = as_policy(source, env, name)
    if is_batch_policy(first):
        return first  # type: ignore[return-value]
    if isinstance(source, str) or inspect.isclass(source) or _is_factory(source):
        rest = [as_policy(source, env, first.name) for _ in range(num_envs - 1)]
    else:
        rest = [copy.deepcopy(first) for _ in range(num_envs - 1)]
    return StackedPolicies([first, *rest])


class StackedPolicies:
    """``N`` policies acting as one :class:`~vap_env.policies.base.BatchPolicy`, policy ``i`` for row ``i``.

    Args:
        policies: One policy per sub-env.
    """

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = list(policies)
        self.name = getattr(self.policies[0], "name", _object_name(self.policies[0]))

    def reset_batch(self, seeds: list[int]) -> None:
        if len(seeds) != len(self.policies):
            raise ValueError(f"{len(seeds)} seeds for a batch of {len(self.policies)} policies")
        for policy, seed in zip(self.policies, seeds, strict=True):
            policy.reset(seed=seed)

    def act_batch(self, obs: Any) -> np.ndarray:
        rows = [
            {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i] for i in range(len(self))
        ]
        return np.stack([policy.act(row) for policy, row in zip(self.policies, rows, strict=True)])

    def __len__(self) -> int:
        return len(self.policies)


class FunctionPolicy:
    """A plain function ``obs -> action`` as a :class:`~vap_env.policies.base.Policy` (``reset`` does nothing).

    Args:
        fn: The function; called as ``fn(obs, **kwargs)``.
        kwargs: Keyword arguments for every call.
    """

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any] | None = None) -> None:
        self.fn, self.kwargs = fn, dict(kwargs or {})

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: Any) -> np.ndarray:
        return self.fn(obs, **self.kwargs)

    def __repr__(self) -> str:
        return f"FunctionPolicy({_object_name(self.fn)})"


def from_object(obj: Any, env: Any, kwargs: dict[str, Any], name: str) -> Any:
    """The policy ``obj`` makes for ``env``: ``obj`` itself, ``obj(env, **kwargs)``, or a wrapped function.

    Raises:
        PolicyError: ``obj`` is none of the accepted kinds, or its class or factory failed or made no policy.
    """
    if inspect.isclass(obj):
        if not (_has(obj, "act") or _has(obj, "act_batch")):
            raise PolicyError(
                name, f"class {obj.__qualname__} has no act() method, so it is not a policy; give {ACCEPTED}"
            )
        return _made(obj, env, kwargs, name, f"class {obj.__qualname__}")
    if _is_policy_object(obj):
        if kwargs:
            raise PolicyError(name, f"{obj!r} is a policy object: it takes no arguments, got {kwargs}")
        return obj
    if callable(obj):
        if _is_factory(obj):
            return _made(obj, env, kwargs, name, f"factory {_object_name(obj)}")
        return FunctionPolicy(obj, kwargs)
    raise PolicyError(name, f"{obj!r} (a {type(obj).__name__}) is not a policy; give {ACCEPTED}")


def _made(maker: Callable[..., Any], env: Any, kwargs: dict[str, Any], name: str, what: str) -> Any:
    try:
        policy = maker(env, **kwargs)
    except PolicyError:
        raise
    except Exception as e:
        raise PolicyError(name, f"{what}(env, **{kwargs}) raised {type(e).__name__}: {e}") from e
    if not _is_policy_object(policy):
        raise PolicyError(
            name, f"{what} returned {policy!r}, which has no reset() and act(); give {ACCEPTED}"
        )
    return policy


def _has(obj: Any, method: str) -> bool:
    return callable(getattr(obj, method, None))


def _is_policy_object(obj: Any) -> bool:
    return (_has(obj, "reset") and _has(obj, "act")) or is_batch_policy(obj)


def _is_factory(obj: Any) -> bool:
    """Whether callable ``obj`` takes an env: its first parameter is named ``env`` or annotated as an env."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: a function of the observation
        return False
    if not params:
        return False
    first = params[0]
    annotation = first.annotation
    if isinstance(annotation, str):  # postponed annotations (`from __future__ import annotations`)
        return first.name == "env" or annotation.rsplit(".", 1)[-1].endswith("Env")
    is_env = inspect.isclass(annotation) and issubclass(annotation, (gym.Env, gym.vector.VectorEnv))
    return first.name == "env" or is_env


def _object_name(obj: Any) -> str:
    return (
        getattr(obj, "__name__", None) or type(obj).__name__
    )  # a function's or class's name, else its class


# ------------------------------------------------------------------------------------------- the py: kind
def load_python(args: str, env: gym.Env) -> Any:
    """The builder of the ``py:`` kind: ``args`` is ``MODULE:NAME`` or ``FILE.py:NAME``, then ``,KEY=VALUE``s.

    Raises:
        PolicyError: No such module or file, no ``NAME`` in it, or ``NAME`` is not a policy.
    """
    spec = f"py:{args}"
    target, _, rest = args.partition(",")
    where, sep, attr = target.strip().rpartition(":")
    if not sep or not where or not attr:
        raise PolicyError(spec, "expected py:MODULE:NAME or py:path/to/file.py:NAME")
    kwargs = _parse_values(rest, spec)
    module = _import(where, spec)
    if not hasattr(module, attr):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise PolicyError(
            spec, f"{where} has no {attr!r}; it defines: {', '.join(defined) or 'nothing callable'}"
        )
    return from_object(getattr(module, attr), env, kwargs, spec)


def _import(where: str, spec: str) -> Any:
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    if not is_file:
        try:
            return importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name is None or not (where == e.name or where.startswith(f"{e.name}.")):
                raise PolicyError(spec, f"importing module {where!r} failed: {e}") from e
            raise PolicyError(
                spec,
                f"no module {where!r}: give an importable module (on PYTHONPATH) or the path of a .py file",
            ) from None
        except Exception as e:
            raise PolicyError(spec, f"importing module {where!r} raised {type(e).__name__}: {e}") from e
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise PolicyError(
            spec, f"no such file {where!r}: give the path of a .py file or an importable module"
        )
    # a module name of its own per file, registered so that pickling and dataclasses inside it work; a file
    # runs once per process, as an imported module does (N policies of one spec share its classes)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"_vap_env_policy_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise PolicyError(spec, f"cannot import {where!r} as Python code")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise PolicyError(spec, f"running {where!r} raised {type(e).__name__}: {e}") from e
    return module


def _parse_values(text: str, spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise PolicyError(spec, f"bad argument {item!r}; expected KEY=VALUE")
        out[key] = _value(value.strip())
    return out


def _value(text: str) -> int | float | bool | str:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
