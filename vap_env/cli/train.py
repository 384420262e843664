"""``vap-env train``: world-model training from the command line.

The model flags come from :class:`~vap_env.model.config.WorldModelConfig` and the training flags from
:class:`~vap_env.train.config.WorldModelTrainConfig` (their names, types, defaults and help), both
torch-free; torch and the trainer are imported inside :func:`run`, so ``vap-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vap_env.cli.arguments import Flag, add_config_flags, add_dataset_flags, config_values
from vap_env.model.config import CONTEXT_LAYOUTS, STAGES, TARGETS, WorldModelConfig
from vap_env.prompts.kinds import PROMPT_KINDS, prompt_kind
from vap_env.train.config import LOGGERS, MIXED_PRECISIONS, WorldModelTrainConfig

if TYPE_CHECKING:
    from vap_env.data import EpisodeDataset

DESCRIPTION = """\
Train the action-to-video world model on recorded episodes (`vap-env collect`).

Stages, as in the paper: `joint` trains everything from scratch (small models); `pretrain` teaches the
base transformer video continuation without actions; `control` freezes that base and trains the ControlNet
and LoRA on the action prompts (--init a pretrain output). Several --data directories (e.g. one per task)
are pooled. Held-out episodes (--val-data, or the last 10% of each --data directory) give a one-step
generation PSNR beside the repeat-last-frame baseline every --eval-every steps.

Progressive distillation (--stage distill, after Salimans & Ho 2022): the --init model, frozen, samples
with 2K steps and a copy of it learns to land in one DDIM step where the teacher lands in two, so that it
samples with K (--num-inference-steps; default half the saved model's). Run it again on its output to
halve again. Classifier-free guidance is not distilled.

Conditioning ablations, each trained in stage `control` from the same pretrain output: ControlNet + LoRA
(the default), ControlNet only (--lora-rank 0) and LoRA only (--controlnet-layers 0). A pretrain model's
base takes any conditioning: --prompt, --controlnet-layers and --lora-rank may differ from its own, and the
control stage then starts from fresh, zero-initialised ControlNet/LoRA/state embedder on the saved base.

OUT gets model/ (the final model, loadable with ActionToVideoModel.from_pretrained), checkpoints/ (for
--resume), metrics.csv and train_config.json. The same command runs under `accelerate launch` on several
GPUs."""

EPILOG = """\
examples:
  vap-env train --data data/panda_push --out runs/wm --config tiny --steps 3000
  vap-env train --data data/panda_push --codec runs/codec --out runs/wm --steps 3000 --ema
  vap-env train --data data/panda_push --out runs/pre --stage pretrain --steps 3000
  vap-env train --data data/panda_push --out runs/ctl --stage control --init runs/pre --steps 2000
  vap-env train --data data/panda_push --out runs/lora --stage control --init runs/pre --controlnet-layers 0
  vap-env train --data data/panda_push --out runs/cn --stage control --init runs/pre --lora-rank 0
  vap-env train --data data/panda_push --out runs/st --stage control --init runs/pre --prompt state
  vap-env train --data data/panda_push --out runs/wm --steps 6000 --resume
  vap-env train --data data/panda_push data/panda_reach --out runs/ctl2 --stage control --init runs/ctl
  vap-env train --data data/panda_push --out runs/d1 --stage distill --init runs/ctl --num-inference-steps 1
"""

# None: the preset's value, or with --init the saved model's (see _model_config)
_ATTACHMENT = "(with --init: the saved model's; another {} needs a pretrain model)"
MODEL_FLAGS = (
    Flag(
        "prompt",
        default=None,
        choices=tuple(PROMPT_KINDS),
        default_text="skeleton " + _ATTACHMENT.format("kind"),
    ),
    Flag("controlnet_layers", default=None, default_text="the preset's " + _ATTACHMENT.format("value")),
    Flag("lora_rank", default=None, default_text="the preset's " + _ATTACHMENT.format("value")),
    Flag("context_frames", default=None, default_text="1 (with --init: the saved model's)"),
    Flag(
        "context_layout",
        default=None,
        choices=CONTEXT_LAYOUTS,
        default_text="sequence (with --init: the saved model's)",
    ),
    Flag(
        "warped_context",
        default=None,
        help="motion-compensated context: the newest context frame with its "
        "robot moved by the kinematics to the next commanded pose (with --init: switches it on for a model "
        "trained without it)",
    ),
    Flag(
        "object_warp",
        default=None,
        help="with --warped-context: the pushed object in that frame moved too, to where the model's learned "
        "object dynamics (fitted on the training episodes, about a minute, saved with the model) sends it",
    ),
    Flag("frames_per_step", default=None, default_text="1 (with --init: the saved model's)"),
    Flag("target", default=None, choices=TARGETS, default_text="frame (with --init: the saved model's)"),
    Flag(
        "stage",
        choices=STAGES,
        help="joint: all weights from scratch; pretrain: base only, no action conditioning; "
        "control: base frozen, ControlNet + LoRA (needs --init); distill: the --init model distilled "
        "into --num-inference-steps sampling steps, learning to do in one step what it does in two",
    ),
    Flag(
        "num_inference_steps",
        default=None,
        metavar="K",
        default_text="the preset's (with --init: the saved model's; with --stage distill: half of it)",
    ),
)
"""The :class:`WorldModelConfig` fields ``vap-env train`` exposes."""

TRAIN_FLAGS = (
    "steps",
    "batch_size",
    "lr",
    "eval_every",
    Flag("checkpoint_every", note=f"the last {WorldModelTrainConfig.keep_checkpoints} are kept"),
    Flag("interaction_weight", metavar="W"),
    Flag("object_weight", metavar="W"),
    Flag("contact_repeat", metavar="N"),
    Flag("rollout_fraction", metavar="F"),
    Flag("rollout_frames", metavar="L"),
    "ema",
    "cache_clips",
    Flag("mixed_precision", choices=MIXED_PRECISIONS),
    "gradient_checkpointing",
    Flag("log", choices=LOGGERS),
    "seed",
)
"""The :class:`WorldModelTrainConfig` fields ``vap-env train`` exposes."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``train`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    p = subparsers.add_parser(
        "train",
        help="train the world model on recorded episodes",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_flags(p)
    p.add_argument(
        "--config",
        default="tiny",
        metavar="tiny|FILE",
        help="model size: `tiny` (the CPU preset, fitted to the data's robot and image size) or a "
        "WorldModelConfig JSON file; ignored with --init; default: tiny",
    )
    p.add_argument("--init", metavar="DIR", help="start from a saved model (a model/ folder or a run's OUT)")
    p.add_argument(
        "--codec",
        metavar="DIR",
        help="a trained codec (`train_codec` output) to work in its latent space; default: the "
        "--init model's codec, else pixel space",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --out (same step, optimizer and RNG state)",
    )
    add_config_flags(p.add_argument_group("model (WorldModelConfig)"), WorldModelConfig, MODEL_FLAGS)
    training = p.add_argument_group("training (WorldModelTrainConfig)")
    add_config_flags(training, WorldModelTrainConfig, TRAIN_FLAGS)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``vap-env train``: builds the configs, trains, prints a summary. Returns the exit code."""
    from vap_env.train.world_model_trainer import train_world_model

    try:
        for data_dir in args.data + (args.val_data or []):
            if not Path(data_dir).is_dir():
                raise FileNotFoundError(f"dataset directory {data_dir} does not exist")
        init = _init_dir(args.init) if args.init else None
        model_config = _model_config(args, init)
        train_config = WorldModelTrainConfig(**config_values(args, TRAIN_FLAGS))
        result = train_world_model(
            args.data,
            args.out,
            model_config,
            train_config,
            codec_dir=args.codec,
            init_from=init,
            val_data_dir=args.val_data,
            resume=args.resume,
        )
    except (ValueError, OSError, ModuleNotFoundError) as error:  # OSError: missing, existing, corrupt files
        print(f"vap-env train: error: {error}", file=sys.stderr)
        return 2
    if "heldout_psnr" not in result:  # not the main process of a multi-process launch: it evaluates nothing
        return 0
    steps = model_config.num_inference_steps if model_config is not None else None
    if args.stage == "distill":
        print(f"distilled {2 * steps}-step sampling into {steps} step{'s' if steps > 1 else ''}")
    trained = result["step"] - result["start_step"]
    # a run resumed at its last step trains nothing: no rate to print
    rate = f", {result['it_per_s']:.2f} steps/s" if trained and "it_per_s" in result else ""
    # a motion-compensated model's last context frame is the warped one: the baseline repeats that
    warped = model_config is not None and model_config.warped_context
    baseline = "the warped last frame" if warped else "repeat last frame"
    print(
        f"trained {trained} steps ({result['step']} in all) in {result['seconds']:.0f} s{rate}; held-out one-step "
        f"PSNR {result['heldout_psnr']:.2f} dB, SSIM {result['heldout_ssim']:.3f} ({baseline}: "
        f"{result['baseline_psnr']:.2f} dB, {result['baseline_ssim']:.3f}; through the codec: "
        f"{result['codec_baseline_psnr']:.2f} dB); model written to "
        f"{result['model_dir']}"
    )
    return 0


def _init_dir(init: str) -> Path:
    """The saved model ``--init`` names (a model directory, a run's OUT, or ``default``), or a clear error."""
    from vap_env.model.loading import model_directory  # the one model-directory lookup

    try:
        return model_directory(init)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--init {init} holds no saved world model (no config.json there or in model/)"
        ) from None


def _model_config(args: argparse.Namespace, init: Path | None) -> WorldModelConfig:
    """The model config the flags ask for; with ``--init`` the saved one, with the flags that were given.

    Attachment flags (``--prompt``, ``--controlnet-layers``, ``--lora-rank``) that differ from an ``--init``
    model need it to be a ``pretrain`` one (:func:`~vap_env.train.model_setup.build_model` checks);
    a ``state`` prompt new to it gets the data's state size.
    """
    given = config_values(args, MODEL_FLAGS)
    given = {k: v for k, v in given.items() if v is not None and k != "stage"}
    if init is not None:
        saved = WorldModelConfig.from_json((init / "config.json").read_text())
        if (
            "prompt" in given
            and prompt_kind(given["prompt"]).conditioning == "vector"
            and saved.state_dim < 1
        ):
            # a vector prompt attached to a base that had none: its size is the data's
            given["state_dim"] = _state_dim(_episodes(args.data[0]), given["prompt"])
        if args.stage == "distill" and "num_inference_steps" not in given:
            if saved.num_inference_steps < 2:
                raise ValueError(
                    f"--init {init} samples with 1 step: pass --num-inference-steps K to distil its "
                    "2K-step sampling into K steps"
                )
            given["num_inference_steps"] = saved.num_inference_steps // 2
        return dataclasses.replace(saved, stage=args.stage, **given)
    if args.config != "tiny":
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config {args.config} is neither `tiny` nor an existing JSON file")
        # a new model: a fingerprint copied from a trained model's config.json would refuse any other codec
        config = WorldModelConfig.from_json(path.read_text())
        return dataclasses.replace(config, stage=args.stage, codec_fingerprint=None, **given)
    data = _episodes(args.data[0])  # the trainer checks that every directory fits the model
    given.setdefault("prompt", "skeleton")
    spatial = _codec_spatial_factor(Path(args.codec)) if args.codec else 1
    # about 8-16 tokens along each side of a frame: cheap on a CPU, fine enough for 32-64 px frames
    patch = 2 if spatial >= 4 else 4
    vector = prompt_kind(given["prompt"]).conditioning == "vector"
    state_dim = _state_dim(data, given["prompt"]) if vector else 0
    return WorldModelConfig.tiny(
        robot=data.robot,
        image_size=data.image_size,
        patch_size=patch,
        stage=args.stage,
        state_dim=state_dim,
        **given,
    )


def _episodes(data_dir: str) -> EpisodeDataset:
    from vap_env.data import EpisodeDataset

    data = EpisodeDataset(data_dir)
    if len(data) == 0:
        raise ValueError(f"--data {data_dir} holds no episodes")
    return data


def _codec_spatial_factor(codec_dir: Path) -> int:
    from vap_env.model.codec import load_codec

    return load_codec(codec_dir).spatial_factor


def _state_dim(data: EpisodeDataset, kind: str) -> int:
    """Length of the vector prompt ``kind`` on the data's robot."""
    from vap_env.kinematics import Robot
    from vap_env.train.clips import render_episode_prompts

    episode = data[0]
    robot = Robot(episode.robot)
    try:
        return int(render_episode_prompts(episode, robot, kind).shape[-1])
    finally:
        robot.close()
