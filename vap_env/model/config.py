"""Configuration of the action-to-video world model (:class:`WorldModelConfig`) and its named choices.

Kept apart from the model so that trainers, the command line and the environments can read, write and
compare configurations without building a model.
"""

from __future__ import annotations

import dataclasses
import json

# The prompt-kind table is NumPy-only: this module stays torch- and PyBullet-free.
from vap_env.prompts.kinds import PROMPT_KINDS, prompt_kind

STAGES = ("pretrain", "control", "joint", "distill")
# What the diffusion generates for a new frame (WorldModelConfig.target).
TARGETS = ("frame", "change")
# Where the transformer reads the context latents (WorldModelConfig.context_layout).
CONTEXT_LAYOUTS = ("sequence", "channels")
# Fields that may change between training runs on the same weights (e.g. pretrain -> control); every other
# field fixes the architecture or the data the weights belong to.
TRAINING_FIELDS = (
    "stage",
    "control_dropout",
    "context_noise_log_sigma",
    "context_noise_log_sigma_std",
    "num_inference_steps",
    "codec_fingerprint",
    "warped_context",  # what the newest context frame holds: a fine-tune may start from a model without it
    "object_warp",  # the same, for the object in it
)
# Fields of the conditioning attached to the base transformer (prompt kind, ControlNet, LoRA, state embedder).
# A model saved in the ``pretrain`` stage trained its base without actions, so a new conditioning may be
# attached to that base: a config that differs from the saved one in these fields (and training fields) only
# builds a model with the saved base and a fresh attachment (:meth:`ActionToVideoModel.from_pretrained_base`).
# Every other field still has to match, and a model of another stage refuses any change of them.
ATTACHMENT_FIELDS = (
    "prompt",
    "prompt_channels",
    "controlnet_layers",
    "controlnet_encoder_channels",
    "controlnet_encoder_unshuffle",
    "lora_rank",
    "lora_alpha",
    "state_dim",
    "state_hidden_dim",
)


@dataclasses.dataclass
class WorldModelConfig:
    """Configuration of :class:`ActionToVideoModel`.

    The transformer-size defaults are CogVideoX-5B's (42 blocks of 48 heads x 64, 480x720 frames);
    :meth:`ActionToVideoModel.from_cogvideox` replaces them with the checkpoint's own, and :meth:`tiny` is
    the CPU preset.

    Action conditioning and its ablations (all three train in the ``control`` stage on the same frozen base,
    e.g. one ``pretrain`` model, see :data:`ATTACHMENT_FIELDS`):

    * ControlNet + LoRA (the default): ``controlnet_layers`` >= 1 copied base blocks read the prompt and feed
      one residual per block to the base, whose attention carries a rank-``lora_rank`` LoRA;
    * ControlNet only: ``lora_rank=0``, the base is not adapted at all;
    * LoRA only: ``controlnet_layers=0``, no base block is copied: the trajectory encoder's prompt tokens go
      through one zero-initialised linear projection and are added after base block 0, so the prompt still
      reaches the model but all adaptation of the base is its LoRA.

    Args:
        robot: Name of the robot description the prompts are drawn for.
        image_size: Frame size ``(H, W)`` (an int means square).
        prompt: Prompt kind, a name in :data:`~vap_env.prompts.kinds.PROMPT_KINDS`: an image kind
            (``skeleton``, ``depth_skeleton``, ``mask``, ``depth``) drives a ControlNet, a vector kind
            (``state``) embeds raw vectors into the timestep embedding, ``none`` is unconditioned on actions.
        prompt_channels: Channels ``Cp`` of image prompts.
        context_frames: Frames ``Tc`` the model conditions on (``f k + 1`` for codec temporal factor ``f``).
        context_layout: Where the transformer reads the context latents. ``sequence`` (CogVideoX's own
            layout, what its I2V checkpoints were trained with): the context latent frames are tokens of the
            sequence before the frames to generate, noised to the current level and replaced by the clean
            context at every sampling step, each also concatenated on channels to itself. ``channels``
            (DIAMOND's layout): only the frames to generate are tokens, and every one of them carries all
            ``Tc'`` clean context latents on its channels, at its own position: ``Tc' + Tf'`` times fewer
            tokens (3x fewer with two context frames), and keeping what does not move is a per-token copy
            instead of an attention lookup. The ControlNet's trajectory tokens are those of the generated
            frames, whose 3D convolutions also see the context frames' prompts.
        warped_context: Motion-compensated context: the newest context frame, its robot moved by the
            kinematics to the commanded state of the first frame to generate
            (:func:`vap_env.prompts.warp.warp_to_pose`), is given as the last context frame and the oldest
            is dropped, so that the model corrects a moved arm instead of redrawing it. Training clips and
            the imagined envs build that context themselves; the model's inputs keep their shapes.
        object_warp: With ``warped_context``, the manipulated object in that frame is moved too: to where
            it is in the next frame when training, to where the model's learned object dynamics
            (:class:`~vap_env.model.object_dynamics.ObjectDynamics`, fitted by the trainer on the training
            episodes and saved with the model) sends it in imagination (:func:`vap_env.prompts.warp.
            move_object`). The video model then draws a push it is shown instead of inventing one.
        frames_per_step: Frames ``Tf`` generated per call (a multiple of the codec temporal factor).
        num_layers: Transformer blocks.
        num_attention_heads: Attention heads.
        attention_head_dim: Channels per head.
        time_embed_dim: Width of the timestep embedding.
        text_embed_dim: Width of the (null or precomputed) text embeddings.
        text_length: Tokens ``L`` of the learned null text embedding.
        patch_size: Spatial patch size of the transformer on the latent grid.
        use_rotary_positional_embeddings: RoPE (else sin-cos absolute positions).
        use_learned_positional_embeddings: Learned absolute positions (CogVideoX-5B-I2V; ties the resolution).
        controlnet_layers: Base blocks copied into the ControlNet (image prompts only); 0 copies none and
            adds the projected prompt tokens after block 0 (the LoRA-only ablation).
        controlnet_encoder_channels: Base width of the ControlNet's trajectory encoder.
        controlnet_encoder_unshuffle: Space-to-depth factor of the trajectory encoder's input (it must divide
            codec spatial factor x ``patch_size``); 1 convolves the full-resolution prompt. 4 at 128x128 keeps
            every prompt pixel and makes a CPU training step about twice as fast.
        lora_rank: LoRA rank on the attention projections; 0 disables LoRA (the ControlNet-only ablation).
        lora_alpha: LoRA alpha (scale ``alpha / rank``).
        state_dim: Size ``D`` of a state/action vector (``state`` prompts only).
        state_hidden_dim: Hidden width of the state embedder.
        num_inference_steps: Default denoising steps of ``generate``.
        control_dropout: Probability of dropping the control signal of a training sample, which trains the
            unconditional branch used by classifier-free guidance.
        context_noise_log_sigma: Mean of ``log sigma`` of the noise added to the conditioning context latents
            in training (CogVideoX's I2V recipe; GameNGen's augmentation); ``None`` disables it.
        context_noise_log_sigma_std: Standard deviation of that ``log sigma``.
        stage: Training stage, see :meth:`ActionToVideoModel.set_stage`.
        target: What the diffusion generates for a new frame: ``frame``, its latents (the CogVideoX I2V way),
            or ``change``, the difference of its latents from the last context frame's, times
            ``change_scale``, added back to the context after sampling. Most of a frame does not change
            between two control steps, so a ``change`` model's mean guess (zero) is "repeat the last frame".
            Measured worse than ``frame`` at 128x128 (experiment 6 of
            ``docs/results/interaction_experiments.md``: added-up changes drift, the arm dissolves).
        change_scale: Multiplies the latent change of a ``change`` model so that it has about unit variance
            under the diffusion's noise; ``None`` lets the trainer measure it on the training clips
            before the first step (1 / the target's standard deviation, context noise included).
            Ignored for ``frame``.
        codec_fingerprint: Fingerprint of the codec the weights were trained with
            (:func:`~vap_env.model.checkpoint.module_fingerprint`); :class:`ActionToVideoModel` fills it in
            from its codec and refuses a codec with another fingerprint. ``None`` accepts any codec.
    """

    robot: str = "panda"
    image_size: tuple[int, int] | int = (480, 720)
    prompt: str = "skeleton"
    prompt_channels: int = 3
    context_frames: int = 1
    context_layout: str = "sequence"
    warped_context: bool = False
    object_warp: bool = False
    frames_per_step: int = 1
    num_layers: int = 42
    num_attention_heads: int = 48
    attention_head_dim: int = 64
    time_embed_dim: int = 512
    text_embed_dim: int = 4096
    text_length: int = 226
    patch_size: int = 2
    use_rotary_positional_embeddings: bool = True
    use_learned_positional_embeddings: bool = False
    controlnet_layers: int = 14
    controlnet_encoder_channels: int = 64
    controlnet_encoder_unshuffle: int = 1
    lora_rank: int = 64
    lora_alpha: float = 64.0
    state_dim: int = 0
    state_hidden_dim: int = 256
    num_inference_steps: int = 8
    control_dropout: float = 0.1
    context_noise_log_sigma: float | None = -3.0
    context_noise_log_sigma_std: float = 0.5
    stage: str = "joint"
    target: str = "frame"
    change_scale: float | None = None
    codec_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"`image_size` must be a positive int or (H, W), got {self.image_size}")
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"`prompt` must be one of {list(PROMPT_KINDS)}, got {self.prompt!r}")
        conditioning = prompt_kind(self.prompt).conditioning
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {list(STAGES)}, got {self.stage!r}")
        if not self.robot:
            raise ValueError("`robot` must be a non-empty robot name, got ''")
        for name in (
            "prompt_channels",
            "context_frames",
            "frames_per_step",
            "num_layers",
            "num_attention_heads",
            "attention_head_dim",
            "time_embed_dim",
            "text_embed_dim",
            "text_length",
            "patch_size",
            "controlnet_encoder_channels",
            "controlnet_encoder_unshuffle",
            "state_hidden_dim",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.image_size[0] % self.patch_size or self.image_size[1] % self.patch_size:
            raise ValueError(
                f"`image_size` must be divisible by `patch_size` {self.patch_size}, got {self.image_size}"
            )
        if conditioning == "image" and not 0 <= self.controlnet_layers <= self.num_layers:
            raise ValueError(
                f"`controlnet_layers` must be in [0, {self.num_layers}], got {self.controlnet_layers}"
            )
        if self.lora_rank < 0 or self.lora_alpha <= 0:
            raise ValueError(
                f"`lora_rank` must be >= 0 and `lora_alpha` > 0, got {self.lora_rank}, {self.lora_alpha}"
            )
        if conditioning == "vector" and self.state_dim < 1:
            raise ValueError(f"`state_dim` must be >= 1 for prompt {self.prompt!r}, got {self.state_dim}")
        if not 1 <= self.num_inference_steps <= 1000:
            raise ValueError(f"`num_inference_steps` must be in [1, 1000], got {self.num_inference_steps}")
        if not 0.0 <= self.control_dropout < 1.0:
            raise ValueError(f"`control_dropout` must be in [0, 1), got {self.control_dropout}")
        if self.codec_fingerprint is not None and (
            not isinstance(self.codec_fingerprint, str) or not self.codec_fingerprint
        ):
            raise ValueError(
                f"`codec_fingerprint` must be a non-empty string or None, got {self.codec_fingerprint!r}"
            )
        if self.context_layout not in CONTEXT_LAYOUTS:
            raise ValueError(
                f"`context_layout` must be one of {list(CONTEXT_LAYOUTS)}, got {self.context_layout!r}"
            )
        if self.target not in TARGETS:
            raise ValueError(f"`target` must be one of {list(TARGETS)}, got {self.target!r}")
        if self.change_scale is not None and not self.change_scale > 0:
            raise ValueError(
                f"`change_scale` must be > 0 or None (measured by the trainer), got {self.change_scale}"
            )
        if self.object_warp and not self.warped_context:
            raise ValueError(
                "`object_warp` moves the object in the motion-compensated context frame: it needs "
                "`warped_context`; switch both on"
            )
        if self.context_noise_log_sigma_std < 0:
            raise ValueError(
                f"`context_noise_log_sigma_std` must be >= 0, got {self.context_noise_log_sigma_std}"
            )

    @classmethod
    def tiny(cls, **overrides: object) -> WorldModelConfig:
        """The CPU preset: 64x64 frames, 4 blocks of 4 heads x 32, ControlNet of 2 blocks, LoRA rank 8.

        ``patch_size=2`` suits a 4x latent codec (16x16 latents, 64 tokens a frame); use 4 with a
        :class:`~vap_env.model.codec.PixelCodec`. Any field can be overridden by keyword.
        """
        values: dict[str, object] = dict(
            image_size=64,
            num_layers=4,
            num_attention_heads=4,
            attention_head_dim=32,
            time_embed_dim=128,
            text_embed_dim=64,
            text_length=4,
            patch_size=2,
            controlnet_layers=2,
            controlnet_encoder_channels=16,
            lora_rank=8,
            lora_alpha=8.0,
            state_hidden_dim=128,
            num_inference_steps=4,
        )
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> str:
        """The config as a JSON document."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> WorldModelConfig:
        """Reads a config written by :meth:`to_json`; unknown fields are an error.

        Keys starting with ``_`` are not fields: a saved model's ``config.json`` names its class in
        ``_class_name``, as diffusers configs do (``vap_env.model.loading``).
        """
        values = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown WorldModelConfig fields {unknown}")
        return cls(**values)

    def architecture_differences(self, other: WorldModelConfig) -> dict[str, tuple[object, object]]:
        """Fields outside :data:`TRAINING_FIELDS` that differ: ``{name: (self's value, other's value)}``.

        Weights trained under one config load into a model of the other only when this is empty; a
        ``pretrain`` model's base also takes a config that differs in :data:`ATTACHMENT_FIELDS` only.
        """
        return {
            field.name: (getattr(self, field.name), getattr(other, field.name))
            for field in dataclasses.fields(self)
            if field.name not in TRAINING_FIELDS and getattr(self, field.name) != getattr(other, field.name)
        }

    def attachment_differences(self, other: WorldModelConfig) -> dict[str, tuple[object, object]]:
        """The :data:`ATTACHMENT_FIELDS` that differ: ``{name: (self's value, other's value)}``."""
        return {k: v for k, v in self.architecture_differences(other).items() if k in ATTACHMENT_FIELDS}
