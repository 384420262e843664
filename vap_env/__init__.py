"""vap-env: Gymnasium world-model environments driven by visual action prompts.

Importing the package registers the simulator envs (``vap_env.SIM_ENV_IDS``), so
``gymnasium.make("vap_env/PandaPush-Sim-v0")`` works after ``import vap_env``.
"""

from vap_env.sim.registration import SIM_ENV_IDS

__all__ = ["SIM_ENV_IDS"]
