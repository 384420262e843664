"""Defaults of the training configurations that the command line shows too, in a module without torch.

:class:`~vap_env.train.world_model_trainer.WorldModelTrainConfig` and
:class:`~vap_env.train.codec_trainer.CodecTrainConfig` take these as their fields' defaults, and the
``vap-env train`` and ``vap-env train-codec`` parsers as their flags' defaults: building the parser (and so
``vap-env --help``) imports neither torch nor the trainers, and each default is written once.
"""

from __future__ import annotations

SEED = 0
MIXED_PRECISIONS = ("no", "bf16", "fp16")
"""Autocast precisions ``accelerate`` runs (``no``: full precision), the default first."""
LOGGERS = ("csv", "tensorboard")
"""Where training metrics go: ``metrics.csv`` only, or TensorBoard events too; the default first."""

# WorldModelTrainConfig
WORLD_MODEL_STEPS = 10_000
WORLD_MODEL_BATCH_SIZE = 16
WORLD_MODEL_LR = 3e-4
WORLD_MODEL_EVAL_EVERY = 500
WORLD_MODEL_CHECKPOINT_EVERY = 1_000
WORLD_MODEL_KEEP_CHECKPOINTS = 2
WORLD_MODEL_INTERACTION_WEIGHT = 3.0

# CodecTrainConfig
CODEC_STEPS = 3_000
CODEC_BATCH_SIZE = 16
CODEC_LR = 2e-3
CODEC_EVAL_EVERY = 250
CODEC_CHECKPOINT_EVERY = 500
CODEC_DOWNSAMPLE = 4
CODEC_LATENT_CHANNELS = 8
CODEC_BLOCK_CHANNELS = (16, 32, 64)
