"""Alias of the CogVideoX world model's old home, for code written before ``vap_env.model.cogvideox``.

Use ``from vap_env.model import ActionToVideoModel`` (or :mod:`vap_env.model.cogvideox`) and
:func:`vap_env.model.cogvideox.loaders.load_config` instead; this module goes once its importers move.
"""

from vap_env.model.cogvideox.loaders import load_config
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.model.config import ATTACHMENT_FIELDS, PROMPT_KINDS, STAGES, WorldModelConfig

__all__ = ["ATTACHMENT_FIELDS", "PROMPT_KINDS", "STAGES", "ActionToVideoModel", "WorldModelConfig", "load_config"]
