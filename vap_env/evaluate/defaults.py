"""Defaults of the evaluation that the command line shows too, in a module without torch or PyBullet.

:func:`vap_env.evaluate.runner.evaluate` and the ``vap-env evaluate`` parser both take them from here, so
building the parser (and so ``vap-env --help``) imports neither.
"""

from __future__ import annotations

DEFAULT_POLICIES = (
    "scripted:noise=0",
    "scripted:noise=0.3,hesitation=0.1",
    "scripted:noise=0.6,hesitation=0.2",
    "scripted:noise=1.0,hesitation=0.3",
    "random",
)
"""A graded family, from the clean expert down to random actions: what ranking needs."""

SEED = 400_000
"""Reset seed of the first evaluated episode. `vap-env collect` starts at 0 and the shipped default model
trained on seeds below 15000 (held out: 100000-111009), so evaluating from here scores initial states that
no training run drew, unless asked to."""
