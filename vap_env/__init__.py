"""vap-env: Gymnasium world-model environments driven by visual action prompts.

Importing the package registers the simulator envs (``vap_env.SIM_ENV_IDS``, ``vap_env/<Robot><Task>-Sim-v0``)
and the world-model envs (``vap_env.WM_ENV_IDS``, ``vap_env/<Robot><Task>-WM-v0``), so
``gymnasium.make("vap_env/PandaPush-Sim-v0")`` and ``gymnasium.make("vap_env/PandaPush-WM-v0", model=DIR)``
work after ``import vap_env``. Registration imports neither PyBullet nor torch.
"""

from vap_env.envs.registration import WM_ENV_IDS
from vap_env.sim.registration import SIM_ENV_IDS

__all__ = ["SIM_ENV_IDS", "WM_ENV_IDS"]
