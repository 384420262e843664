"""Policies: scripted experts with a skill knob, random, a person's own (SB3 checkpoints, Python code), specs.

Installed as ``vap_env.policies``. A graded family (``scripted:noise=0``, ``scripted:noise=0.2``, ...) is
what policy evaluation compares across the simulator and imagination; ``sb3:PATH.zip`` and
``py:MODULE:NAME`` bring a trained or hand-written policy into the same comparison. :func:`as_policy` turns
any of them (a spec, a policy, a class, a factory, a function) into a policy whose actions are checked.
"""

from vap_env.policies.base import BatchPolicy, Policy, PolicyError, is_batch_policy, reads_images
from vap_env.policies.checked import CheckedBatchPolicy, CheckedPolicy
from vap_env.policies.factory import POLICY_BUILDERS, make_policy
from vap_env.policies.random_policy import RandomPolicy
from vap_env.policies.sb3 import SB3Policy
from vap_env.policies.scripted import ScriptedPushPolicy, ScriptedReachPolicy
from vap_env.policies.sources import FunctionPolicy, StackedPolicies, as_batch_policy, as_policy, split_named

__all__ = [
    "Policy",
    "BatchPolicy",
    "PolicyError",
    "is_batch_policy",
    "reads_images",
    "as_policy",
    "as_batch_policy",
    "split_named",
    "CheckedPolicy",
    "CheckedBatchPolicy",
    "FunctionPolicy",
    "StackedPolicies",
    "POLICY_BUILDERS",
    "make_policy",
    "RandomPolicy",
    "SB3Policy",
    "ScriptedPushPolicy",
    "ScriptedReachPolicy",
]
