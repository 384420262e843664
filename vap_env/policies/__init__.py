"""Reference policies: scripted experts with a skill knob, random, and ``make_policy`` specs.

Installed as ``vap_env.policies``. A graded family (``scripted:noise=0``, ``scripted:noise=0.2``, ...) is
what policy evaluation compares across the simulator and imagination.
"""

from vap_env.policies.base import Policy
from vap_env.policies.factory import POLICY_BUILDERS, make_policy
from vap_env.policies.random_policy import RandomPolicy
from vap_env.policies.scripted import ScriptedPushPolicy, ScriptedReachPolicy

__all__ = [
    "Policy",
    "POLICY_BUILDERS",
    "make_policy",
    "RandomPolicy",
    "ScriptedPushPolicy",
    "ScriptedReachPolicy",
]
