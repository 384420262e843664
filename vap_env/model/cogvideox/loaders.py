"""Loading the CogVideoX world model: from its own directory, onto a pretrained base, from CogVideoX.

:class:`ActionToVideoLoadersMixin` gives :class:`~vap_env.model.cogvideox.model.ActionToVideoModel` its
constructors from files (as diffusers' loader mixins do): :meth:`~ActionToVideoLoadersMixin.from_pretrained`
(a directory that ``save_pretrained`` wrote), :meth:`~ActionToVideoLoadersMixin.from_pretrained_base` (a new
conditioning on the base of a saved ``pretrain`` model) and :meth:`~ActionToVideoLoadersMixin.from_cogvideox`
(a diffusers CogVideoX checkpoint). :func:`load_config` reads a saved config without building a model.

Conditioning ablations (see :class:`~vap_env.model.config.WorldModelConfig`): ControlNet + LoRA (the
default), ControlNet only (``lora_rank=0``) and LoRA only (``controlnet_layers=0``: the prompt tokens reach
the base through one zero-initialised projection). ``from_pretrained_base`` attaches any of them, or another
prompt kind, to the base of one saved ``pretrain`` model.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import CogVideoXDDIMScheduler
from peft import set_peft_model_state_dict

from vap_env.model.checkpoint import check_model_weights, load_weights_file, module_fingerprint
from vap_env.model.codec import Codec, CogVideoXVAECodec, load_codec
from vap_env.model.cogvideox.controlnet import CogVideoXControlNet
from vap_env.model.cogvideox.transformer import (
    ControlledCogVideoXTransformer,
    add_image_conditioning_channels,
)
from vap_env.model.config import ATTACHMENT_FIELDS, WorldModelConfig
from vap_env.model.loading import CONFIG_FILE
from vap_env.model.object_dynamics import OBJECT_DYNAMICS_DIR, ObjectDynamics
from vap_env.prompts.kinds import prompt_kind

if TYPE_CHECKING:
    from vap_env.model.cogvideox.model import ActionToVideoModel

__all__ = ["EXTRAS_WEIGHTS", "LORA_WEIGHTS", "ActionToVideoLoadersMixin", "load_config"]

LORA_WEIGHTS = "lora/pytorch_lora_weights.safetensors"
EXTRAS_WEIGHTS = "extras.safetensors"


class ActionToVideoLoadersMixin:
    """The ``from_*`` constructors of :class:`~vap_env.model.cogvideox.model.ActionToVideoModel`."""

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        codec: Codec | None = None,
    ) -> ActionToVideoModel:
        """Loads a model written by :meth:`save_pretrained`.

        Args:
            directory: The saved model directory.
            torch_dtype: Dtype to cast the model to (e.g. ``torch.bfloat16`` on a GPU); float32 when ``None``.
            device: Where to put the model.
            codec: A codec to use instead of the saved ``codec/`` (e.g. one already loaded); it must be the
                codec the model was trained with (same :func:`~vap_env.model.checkpoint.module_fingerprint`).

        Raises:
            FileNotFoundError: If a file is missing (the message names it).
            OSError: If a weight file is truncated or unreadable (the message names it and says why).
            ValueError: If the config is invalid or ``codec`` is not the codec the model was trained with.
        """
        directory = Path(directory)
        config = load_config(directory)
        check_model_weights(directory / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            directory / "transformer", torch_dtype=torch_dtype
        )
        controlnet = None
        if prompt_kind(config.prompt).conditioning == "image":
            check_model_weights(directory / "controlnet")
            controlnet = CogVideoXControlNet.from_pretrained(
                directory / "controlnet", torch_dtype=torch_dtype
            )
        codec = _saved_codec(directory, config, codec)
        scheduler = CogVideoXDDIMScheduler.from_pretrained(directory / "scheduler")
        extras = load_weights_file(directory / EXTRAS_WEIGHTS)
        model = cls(config, codec, transformer.to(device), controlnet, scheduler)
        model.null_text.load_state_dict(
            {k.removeprefix("null_text."): v for k, v in extras.items() if k.startswith("null_text.")}
        )
        if model.state_embedder is not None:
            model.state_embedder.load_state_dict(
                {
                    k.removeprefix("state_embedder."): v
                    for k, v in extras.items()
                    if k.startswith("state_embedder.")
                }
            )
        if config.object_warp:
            dynamics = ObjectDynamics.load(directory / OBJECT_DYNAMICS_DIR)
            model.object_dynamics = dynamics.requires_grad_(False).to(device)
        if config.lora_rank > 0:
            lora = load_weights_file(directory / LORA_WEIGHTS)
            result = set_peft_model_state_dict(model.transformer, lora)
            if result.unexpected_keys:
                raise OSError(
                    f"{directory / LORA_WEIGHTS} holds unexpected keys {result.unexpected_keys[:5]}"
                )
        return model.to(device=device, dtype=torch_dtype) if torch_dtype else model.to(device)

    @classmethod
    def from_pretrained_base(
        cls,
        directory: str | Path,
        config: WorldModelConfig,
        codec: Codec | None = None,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> ActionToVideoModel:
        """A model of ``config`` on the base of a saved ``pretrain`` model, with a fresh conditioning.

        A ``pretrain`` model's base transformer learnt video continuation without actions, so any
        conditioning can be attached to it: ``config`` may differ from the saved config in
        :data:`~vap_env.model.config.ATTACHMENT_FIELDS` (prompt kind, ControlNet, LoRA, state embedder) and
        in the training fields. The new model has the saved base transformer weights (``transformer/``,
        without LoRA), null text embedding, codec and scheduler, and a fresh attachment: a ControlNet copied
        from the trained base (as :meth:`recopy_controlnet` does), new LoRA layers and a new state embedder,
        all zero-initialised where they meet the base, so at first its output is the pretrain model's.
        New weights come from the global random state (seed it for reproducible weights).

        Args:
            directory: A model saved by :meth:`save_pretrained` in the ``pretrain`` stage.
            config: The model to build; its ``stage`` sets which parameters train.
            codec: The codec to use instead of the saved one; it must be the codec the model was trained
                with.
            torch_dtype: Dtype to cast the model to; float32 when ``None``.
            device: Where to put the model.

        Raises:
            ValueError: If the configs differ in other than attachment and training fields (layers, heads,
                image size, robot, frames, ...), if attachment fields differ and the saved model is not a
                ``pretrain`` one, or if ``codec`` is not the model's.
            FileNotFoundError, OSError: If a file is missing or damaged.
        """
        directory = Path(directory)
        saved = load_config(directory)
        differences = saved.architecture_differences(config)
        listed = ", ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in differences.items())
        fixed = [k for k in differences if k not in ATTACHMENT_FIELDS]
        if fixed:
            raise ValueError(
                f"the model config does not fit the model in {directory} ({listed}); only the attachment "
                f"fields ({', '.join(ATTACHMENT_FIELDS)}) may change, on a 'pretrain' model's base"
            )
        if saved.stage != "pretrain":
            change = f" ({listed})" if listed else ""
            raise ValueError(
                f"the model config does not fit the model in {directory}{change}: a new conditioning (the "
                f"attachment fields {', '.join(ATTACHMENT_FIELDS)}) can be attached only to the base of a "
                f"'pretrain' model, and this one was trained in stage {saved.stage!r}; use a pretrain "
                "model or the saved config"
            )
        config = dataclasses.replace(config, codec_fingerprint=saved.codec_fingerprint)
        check_model_weights(directory / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            directory / "transformer", torch_dtype=torch_dtype
        )
        codec = _saved_codec(directory, saved, codec)
        scheduler = CogVideoXDDIMScheduler.from_pretrained(directory / "scheduler")
        extras = load_weights_file(directory / EXTRAS_WEIGHTS)
        if "null_text.embedding" not in extras:
            raise OSError(f"{directory / EXTRAS_WEIGHTS} holds no null text embedding (null_text.embedding)")
        model = cls(
            config,
            codec,
            transformer.to(device),
            None,
            scheduler,
            null_text_init=extras["null_text.embedding"],
        )
        return model.to(device=device, dtype=torch_dtype) if torch_dtype else model.to(device)

    @classmethod
    def from_cogvideox(
        cls,
        pretrained_dir: str | Path,
        config: WorldModelConfig,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> ActionToVideoModel:
        """Builds the world model on a CogVideoX diffusers checkpoint in a local directory.

        Reads ``transformer/``, ``vae/`` (wrapped in :class:`CogVideoXVAECodec`) and ``scheduler/`` (as a
        ``CogVideoXDDIMScheduler``), and optionally ``text_embeds.safetensors`` (one ``(1, L, D)`` or
        ``(L, D)`` tensor, e.g. T5 embeddings of a task prompt) as the initial null text embedding. A
        text-to-video transformer (``in_channels`` = latent channels) gets zero-initialised image-conditioning
        input channels. The transformer sizes in ``config`` are replaced by the checkpoint's, and the stage
        is set to ``control``.

        Args:
            pretrained_dir: The diffusers pipeline directory.
            config: Prompt kind, frames, ControlNet and LoRA settings.
            torch_dtype: Dtype of the transformer, ControlNet and VAE (e.g. ``torch.bfloat16`` on a GPU).
            device: Where to put the model.
        """
        pretrained_dir = Path(pretrained_dir)
        check_model_weights(pretrained_dir / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            pretrained_dir / "transformer", torch_dtype=torch_dtype
        )
        codec = CogVideoXVAECodec.from_pretrained(pretrained_dir, subfolder="vae", torch_dtype=torch_dtype)
        scheduler_config = CogVideoXDDIMScheduler.load_config(pretrained_dir / "scheduler")
        scheduler = CogVideoXDDIMScheduler.from_config(scheduler_config)
        if transformer.config.in_channels == codec.latent_channels:
            transformer = add_image_conditioning_channels(transformer)
        tc = transformer.config
        null_text = None
        text_file = pretrained_dir / "text_embeds.safetensors"
        if text_file.exists():
            tensors = load_weights_file(text_file)
            if len(tensors) != 1:
                raise OSError(f"{text_file} must hold one tensor, found {sorted(tensors)}")
            null_text = next(iter(tensors.values()))
            null_text = null_text[None] if null_text.ndim == 2 else null_text
        absolute = not tc.use_rotary_positional_embeddings or tc.use_learned_positional_embeddings
        text_length = (
            null_text.shape[1]
            if null_text is not None
            else tc.max_text_seq_length
            if absolute
            else config.text_length
        )
        config = dataclasses.replace(
            config,
            num_layers=tc.num_layers,
            num_attention_heads=tc.num_attention_heads,
            attention_head_dim=tc.attention_head_dim,
            time_embed_dim=tc.time_embed_dim,
            text_embed_dim=tc.text_embed_dim,
            text_length=text_length,
            patch_size=tc.patch_size,
            use_rotary_positional_embeddings=tc.use_rotary_positional_embeddings,
            use_learned_positional_embeddings=tc.use_learned_positional_embeddings,
            stage="control",
        )
        num_frames = config.context_frames + config.frames_per_step
        if tc.use_learned_positional_embeddings and num_frames != tc.sample_frames:
            warnings.warn(
                f"the transformer learned positions for {tc.sample_frames} frames; with {num_frames} frames "
                "diffusers silently falls back to sin-cos positions (out of distribution for this model)",
                stacklevel=2,
            )
        model = cls(config, codec, transformer.to(device), None, scheduler, null_text_init=null_text)
        return model.to(device)


def load_config(directory: str | Path) -> WorldModelConfig:
    """The config of a model saved by :meth:`ActionToVideoModel.save_pretrained` (its ``config.json``).

    Raises:
        FileNotFoundError: If there is no ``config.json``.
        ValueError: If it is not a valid config.
    """
    config_file = Path(directory) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"missing world-model config: {config_file} does not exist")
    try:
        return WorldModelConfig.from_json(config_file.read_text())
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"invalid world-model config {config_file}: {error}") from error


def _saved_codec(directory: Path, config: WorldModelConfig, codec: Codec | None) -> Codec:
    """The codec saved in ``directory/codec``, or ``codec`` after checking that it is the same one."""
    if codec is None:
        return load_codec(directory / "codec")
    # models saved before the fingerprint existed: compare with the codec saved beside them
    trained_with = config.codec_fingerprint or module_fingerprint(load_codec(directory / "codec"))
    given = module_fingerprint(codec)
    if given != trained_with:
        raise ValueError(
            f"the world model in {directory} was trained with codec {trained_with} (saved in its "
            f"codec/ folder), but the codec given is {given} ({type(codec).__name__}); pass the "
            "codec it was trained with, or none to use the saved one"
        )
    return codec
