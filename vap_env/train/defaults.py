"""Defaults of the training configurations that the command line shows too, in a module without torch.

They are read off the fields of :class:`~vap_env.train.config.WorldModelTrainConfig` and
:class:`~vap_env.train.config.CodecTrainConfig` (a dataclass keeps each field's default as a class
attribute), so each default is written once, in :mod:`vap_env.train.config`; the ``vap-env train`` and
``vap-env train-codec`` parsers take them as their flags' defaults without importing torch or the trainers.
"""

from __future__ import annotations

from vap_env.train.config import LOGGERS, MIXED_PRECISIONS, CodecTrainConfig, WorldModelTrainConfig

__all__ = ["LOGGERS", "MIXED_PRECISIONS"]  # re-exported for the parsers

SEED = WorldModelTrainConfig.seed

# WorldModelTrainConfig
WORLD_MODEL_STEPS = WorldModelTrainConfig.steps
WORLD_MODEL_BATCH_SIZE = WorldModelTrainConfig.batch_size
WORLD_MODEL_LR = WorldModelTrainConfig.lr
WORLD_MODEL_EVAL_EVERY = WorldModelTrainConfig.eval_every
WORLD_MODEL_CHECKPOINT_EVERY = WorldModelTrainConfig.checkpoint_every
WORLD_MODEL_KEEP_CHECKPOINTS = WorldModelTrainConfig.keep_checkpoints
WORLD_MODEL_INTERACTION_WEIGHT = WorldModelTrainConfig.interaction_weight

# CodecTrainConfig
CODEC_STEPS = CodecTrainConfig.steps
CODEC_BATCH_SIZE = CodecTrainConfig.batch_size
CODEC_LR = CodecTrainConfig.lr
CODEC_EVAL_EVERY = CodecTrainConfig.eval_every
CODEC_CHECKPOINT_EVERY = CodecTrainConfig.checkpoint_every
CODEC_DOWNSAMPLE = CodecTrainConfig.downsample
CODEC_LATENT_CHANNELS = CodecTrainConfig.latent_channels
CODEC_BLOCK_CHANNELS = CodecTrainConfig.block_channels
