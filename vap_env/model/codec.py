"""Codecs: the map between frames and the space the world model's transformer works in.

Every codec speaks one interface, :class:`Codec`: ``encode`` turns ``(B, T, 3, H, W)`` frames in
``[-1, 1]`` into ``(B, T', C, h, w)`` latents already multiplied by the codec's scaling factor (about unit
variance, which is what the diffusion noise schedule assumes), and ``decode`` inverts it. Three codecs
implement it:

* :class:`PixelCodec` — the identity, for pixel-space models.
* :class:`CogVideoXVAECodec` — the CogVideoX 3D VAE (4x temporal, 8x spatial), for the full-size models.
* :class:`FrameAutoencoder` — a small learned per-frame autoencoder, the CPU default (one env step is one
  latent frame).

:func:`load_codec` reads any of them back from the directory its ``save_pretrained`` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError
from torch import Tensor

CONFIG_NAME = "config.json"


class Codec(torch.nn.Module):
    """The one interface for every codec.

    Attributes:
        latent_channels: Channels ``C`` of a latent frame.
        spatial_factor: Pixels per latent cell along each side (1 for pixels, 4 or 8 for autoencoders).
        temporal_factor: Frames per latent frame: 1, or 4 for the CogVideoX VAE, which encodes ``4k + 1``
            frames into ``k + 1`` latent frames (the first frame alone, then groups of four).
    """

    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def encode(self, frames: Tensor) -> Tensor:
        """Encodes frames into scaled latents.

        Args:
            frames: ``(B, T, 3, H, W)`` float frames in ``[-1, 1]``.

        Returns:
            ``(B, T', C, h, w)`` latents multiplied by the scaling factor.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `encode`")

    def decode(self, latents: Tensor) -> Tensor:
        """Decodes scaled latents into frames.

        Args:
            latents: ``(B, T', C, h, w)`` latents as :meth:`encode` returns them.

        Returns:
            ``(B, T, 3, H, W)`` frames clamped to ``[-1, 1]``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `decode`")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The latent shape of a clip, checking that the codec can encode it.

        Args:
            num_frames: Frames ``T`` of the clip; ``4k + 1`` when ``temporal_factor`` is 4.
            height: Frame height ``H``, divisible by ``spatial_factor``.
            width: Frame width ``W``, divisible by ``spatial_factor``.

        Returns:
            ``(T', C, h, w)``.

        Raises:
            ValueError: If a size is not positive or the codec cannot encode it.
        """
        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if value < 1:
                raise ValueError(f"`{name}` must be positive, got {value}")
        s, t = self.spatial_factor, self.temporal_factor
        if height % s or width % s:
            raise ValueError(
                f"{type(self).__name__} downsamples {s}x spatially: height and width must be divisible "
                f"by {s}, got {height}x{width}"
            )
        if (num_frames - 1) % t:
            raise ValueError(
                f"{type(self).__name__} compresses time {t}x: `num_frames` must be {t}k + 1 "
                f"(1, {t + 1}, {2 * t + 1}, ...), got {num_frames}"
            )
        return ((num_frames - 1) // t + 1, self.latent_channels, height // s, width // s)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Writes the codec (``config.json`` naming its class, plus weights) for :func:`load_codec`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `save_pretrained`")

    def num_frames(self, num_latent_frames: int) -> int:
        """Frames that ``num_latent_frames`` latent frames decode into (``T = t (T' - 1) + 1``)."""
        return self.temporal_factor * (num_latent_frames - 1) + 1

    def _check_frames(self, frames: Tensor) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got shape {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be floating point in [-1, 1], got dtype {frames.dtype}")
        self.latent_shape(frames.shape[1], frames.shape[3], frames.shape[4])

    def _check_latents(self, latents: Tensor) -> None:
        if latents.ndim != 5 or latents.shape[2] != self.latent_channels:
            raise ValueError(
                f"latents must be (B, T', {self.latent_channels}, h, w), got shape {tuple(latents.shape)}"
            )


class PixelCodec(Codec):
    """The identity codec: pixel-space models see frames as they are (``C = 3``, factors 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_channels = 3
        self.spatial_factor = 1
        self.temporal_factor = 1

    def encode(self, frames: Tensor) -> Tensor:
        """Returns the ``(B, T, 3, H, W)`` frames unchanged (no copy)."""
        self._check_frames(frames)
        return frames

    def decode(self, latents: Tensor) -> Tensor:
        """Returns the ``(B, T, 3, H, W)`` latents clamped to ``[-1, 1]``."""
        self._check_latents(latents)
        return latents.clamp(-1.0, 1.0)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Writes ``config.json`` (the class name is all there is to save) so :func:`load_codec` finds it."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        (save_directory / CONFIG_NAME).write_text(json.dumps({"_class_name": type(self).__name__}, indent=2))


class CogVideoXVAECodec(Codec):
    """The CogVideoX 3D VAE (``diffusers.AutoencoderKLCogVideoX``) behind the codec interface.

    It compresses ``4k + 1`` frames into ``k + 1`` latent frames (the first frame alone, then groups of four;
    the VAE itself walks long clips in chunks with a causal conv cache) and ``2 ** (levels - 1)`` times
    (8x for the released weights) along each side. For large frames on a GPU, ``codec.vae.enable_tiling()``
    bounds memory. Note that diffusers' CogVideoX I2V pipeline, not this codec, decides how the conditioning
    image latent is scaled (``vae.config.invert_scale_latents``).

    Args:
        vae: The VAE; its ``config.scaling_factor`` (and ``shift_factor`` when set) scale the latents.
        sample_posterior: Whether :meth:`encode` samples the posterior instead of taking its mode.
    """

    def __init__(self, vae: AutoencoderKLCogVideoX, sample_posterior: bool = False) -> None:
        super().__init__()
        self.vae = vae
        self.sample_posterior = sample_posterior
        self.latent_channels = int(vae.config.latent_channels)
        self.spatial_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.temporal_factor = int(vae.config.temporal_compression_ratio)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        sample_posterior: bool = False,
    ) -> CogVideoXVAECodec:
        """Loads the VAE from a local directory (``subfolder="vae"`` for a whole CogVideoX checkpoint)."""
        vae = AutoencoderKLCogVideoX.from_pretrained(path, subfolder=subfolder, torch_dtype=torch_dtype)
        return cls(vae, sample_posterior=sample_posterior)

    @property
    def _shift(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    def encode(self, frames: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Encodes ``(B, 4k + 1, 3, H, W)`` frames into ``(B, k + 1, C, H / 8, W / 8)`` scaled latents.

        Args:
            frames: Frames in ``[-1, 1]``.
            generator: Draws the posterior sample when ``sample_posterior`` is set; ignored otherwise.
        """
        self._check_frames(frames)
        video = frames.permute(0, 2, 1, 3, 4).to(self.vae.dtype)  # the VAE wants (B, C, T, H, W)
        posterior = self.vae.encode(video).latent_dist
        latents = posterior.sample(generator) if self.sample_posterior else posterior.mode()
        latents = (latents - self._shift) * self.vae.config.scaling_factor
        return latents.permute(0, 2, 1, 3, 4)

    def decode(self, latents: Tensor) -> Tensor:
        """Decodes ``(B, k + 1, C, h, w)`` scaled latents into ``(B, 4k + 1, 3, 8h, 8w)`` frames."""
        self._check_latents(latents)
        z = latents.permute(0, 2, 1, 3, 4).to(self.vae.dtype) / self.vae.config.scaling_factor + self._shift
        video = self.vae.decode(z).sample
        return video.permute(0, 2, 1, 3, 4).clamp(-1.0, 1.0)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Saves the VAE (config.json + safetensors) so :func:`load_codec` reads it back."""
        self.vae.save_pretrained(save_directory)


class _ResnetBlock(ResnetBlock2D):
    """diffusers' ``ResnetBlock2D`` without a time embedding, callable inside ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x, None)


# Codec (an nn.Module) goes before ConfigMixin so that nn.Module.__getattr__ (submodules) precedes
# ConfigMixin.__getattr__ in the MRO, as in every diffusers model.
class FrameAutoencoder(ModelMixin, Codec, ConfigMixin):
    """A small learned per-frame autoencoder: the default codec of the CPU-trained world model.

    Why not a small ``AutoencoderKLCogVideoX`` with ``temporal_compression_ratio=1``: its config allows it,
    but its convolutions stay causal 3D ones, so a frame's latent depends on the frames before it (one env
    step would not be one independent latent frame unless time is folded into the batch), its 3x3x3 kernels
    and latent-conditioned decoder norms cost 5x the weights (7.3 M against 1.45 M with blocks (32, 64, 128),
    one layer per block, 8 latent channels), and at 64x64 on one CPU core it encoded 15-31 and decoded 7-8
    frames/s against 85-113 and 54-72 for this model (batch 1-64). Instead this is a plain 2D
    conv autoencoder built from diffusers' own blocks (``ResnetBlock2D`` with GroupNorm/SiLU, strided-conv
    ``Downsample2D``, nearest + conv ``Upsample2D``). Its latents are deterministic: a world-model codec
    needs no KL sampling, and the trainer's small latent L2 penalty keeps their scale sane.

    Args:
        in_channels: Image channels.
        latent_channels: Channels ``C`` of a latent frame.
        downsample: Spatial downsampling (a power of two, 4 or 8 typically); the first ``log2(downsample)``
            levels of ``block_channels`` end with a strided convolution.
        block_channels: Channels of each resolution level, from the full-resolution one down.
        layers_per_block: ResNet blocks per level (in the encoder and in the decoder).
        norm_num_groups: GroupNorm groups; must divide every entry of ``block_channels``.
        scaling_factor: Multiplies the latents after the shift; :meth:`fit_latent_scale` sets it to
            ``1 / std`` of the training latents.
        shift_factor: Subtracted from the latents before scaling (their mean on the training data).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 8,
        downsample: int = 4,
        block_channels: tuple[int, ...] = (16, 32, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ) -> None:
        super().__init__()
        num_down = self.check_args(downsample, block_channels, layers_per_block, norm_num_groups)
        self.latent_channels = latent_channels
        self.spatial_factor = downsample
        self.temporal_factor = 1

        def resnet(c_in: int, c_out: int) -> _ResnetBlock:
            return _ResnetBlock(
                in_channels=c_in, out_channels=c_out, temb_channels=None, groups=norm_num_groups
            )

        # Encoder: level i runs at 1 / 2**min(i, num_down) resolution and ends with a downsampling if
        # i < num_down.
        encoder: list[torch.nn.Module] = [torch.nn.Conv2d(in_channels, block_channels[0], 3, padding=1)]
        prev = block_channels[0]
        for i, channels in enumerate(block_channels):
            for _ in range(layers_per_block):
                encoder.append(resnet(prev, channels))
                prev = channels
            if i < num_down:
                encoder.append(Downsample2D(prev, use_conv=True, padding=1, name="op"))
        encoder += [resnet(prev, prev), torch.nn.GroupNorm(norm_num_groups, prev), torch.nn.SiLU()]
        encoder.append(torch.nn.Conv2d(prev, latent_channels, 3, padding=1))
        self.encoder = torch.nn.Sequential(*encoder)

        # Decoder: the mirror image, so level i upsamples at its start if i < num_down. The upsampling conv
        # already narrows to the level's channels: at the higher resolution that halves its cost.
        decoder: list[torch.nn.Module] = [torch.nn.Conv2d(latent_channels, prev, 3, padding=1)]
        decoder.append(resnet(prev, prev))
        for i in reversed(range(len(block_channels))):
            if i < num_down:
                decoder.append(Upsample2D(prev, use_conv=True, out_channels=block_channels[i]))
                prev = block_channels[i]
            for _ in range(layers_per_block):
                decoder.append(resnet(prev, block_channels[i]))
                prev = block_channels[i]
        decoder += [torch.nn.GroupNorm(norm_num_groups, prev), torch.nn.SiLU()]
        decoder.append(torch.nn.Conv2d(prev, in_channels, 3, padding=1))
        self.decoder = torch.nn.Sequential(*decoder)

    @staticmethod
    def check_args(
        downsample: int, block_channels: tuple[int, ...], layers_per_block: int, norm_num_groups: int
    ) -> int:
        """Validates the architecture (``ValueError`` naming the field); returns ``log2(downsample)``."""
        if downsample < 2 or downsample & (downsample - 1):
            raise ValueError(f"`downsample` must be a power of two >= 2 (4 or 8 typically), got {downsample}")
        num_down = downsample.bit_length() - 1
        if len(block_channels) < num_down:
            raise ValueError(
                f"`block_channels` needs at least log2(downsample) = {num_down} levels for downsample "
                f"{downsample}, got {tuple(block_channels)}"
            )
        if any(c % norm_num_groups for c in block_channels):
            raise ValueError(
                f"`norm_num_groups` ({norm_num_groups}) must divide every entry of `block_channels`, "
                f"got {tuple(block_channels)}"
            )
        if layers_per_block < 1:
            raise ValueError(f"`layers_per_block` must be >= 1, got {layers_per_block}")
        return num_down

    def encode_images(self, images: Tensor) -> Tensor:
        """Raw (unscaled) latents of ``(N, 3, H, W)`` images in ``[-1, 1]``: ``(N, C, H / s, W / s)``."""
        return self.encoder(images)

    def decode_images(self, latents: Tensor) -> Tensor:
        """Unclamped ``(N, 3, H, W)`` images of raw ``(N, C, h, w)`` latents (training uses this directly)."""
        return self.decoder(latents)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstructs ``(N, 3, H, W)`` images; returns ``(reconstruction, raw latents)`` for the loss."""
        latents = self.encode_images(images)
        return self.decode_images(latents), latents

    def encode(self, frames: Tensor) -> Tensor:
        """Encodes ``(B, T, 3, H, W)`` frames one by one into ``(B, T, C, H/s, W/s)`` scaled latents."""
        self._check_frames(frames)
        b, t = frames.shape[:2]
        latents = self.encode_images(frames.flatten(0, 1).to(self.dtype))
        latents = (latents - self.config.shift_factor) * self.config.scaling_factor
        return latents.unflatten(0, (b, t))

    def decode(self, latents: Tensor) -> Tensor:
        """Decodes ``(B, T, C, h, w)`` scaled latents into ``(B, T, 3, s h, s w)`` frames in ``[-1, 1]``."""
        self._check_latents(latents)
        b, t = latents.shape[:2]
        z = latents.flatten(0, 1).to(self.dtype) / self.config.scaling_factor + self.config.shift_factor
        return self.decode_images(z).clamp(-1.0, 1.0).unflatten(0, (b, t))

    @torch.no_grad()
    def fit_latent_scale(self, images: Tensor, batch_size: int = 64) -> tuple[float, float]:
        """Sets ``shift_factor`` to the mean and ``scaling_factor`` to ``1 / std`` of the latents of images.

        Diffusion schedules assume unit-variance data, so the scaled latents should have it (as
        ``AutoencoderKL``'s ``scaling_factor`` does for Stable Diffusion). Both values go into the config and
        hence into ``config.json`` on ``save_pretrained``.

        Args:
            images: ``(N, 3, H, W)`` images, float in ``[-1, 1]`` or uint8 ``(N, H, W, 3)`` frames.
            batch_size: Images encoded at a time.

        Returns:
            ``(scaling_factor, shift_factor)``.
        """
        if images.dtype == torch.uint8:
            images = frames_to_tensor(images)
        count, total, total_sq = 0, 0.0, 0.0
        for start in range(0, images.shape[0], batch_size):
            z = self.encode_images(images[start : start + batch_size].to(self.device, self.dtype)).double()
            count += z.numel()
            total += z.sum().item()
            total_sq += z.square().sum().item()
        mean = total / count
        std = max(total_sq / count - mean * mean, 1e-12) ** 0.5
        self.register_to_config(scaling_factor=1.0 / std, shift_factor=mean)
        return 1.0 / std, mean


_CODEC_CLASSES = ("PixelCodec", "FrameAutoencoder", "AutoencoderKLCogVideoX")


def load_codec(path: str | Path) -> Codec:
    """Loads the codec a ``save_pretrained`` call wrote into ``path``.

    The class comes from ``_class_name`` in ``path/config.json``. A whole diffusers CogVideoX checkpoint
    (with a ``vae/`` subfolder) is accepted too.

    Args:
        path: The saved directory.

    Returns:
        A :class:`PixelCodec`, :class:`FrameAutoencoder` or :class:`CogVideoXVAECodec`, in eval mode.

    Raises:
        FileNotFoundError: If the directory or its ``config.json`` is missing.
        ValueError: If ``config.json`` is not valid JSON or names an unknown class.
        OSError: If the weights file is missing or cannot be read.
    """
    path = Path(path)
    if not (path / CONFIG_NAME).is_file() and (path / "vae" / CONFIG_NAME).is_file():
        path = path / "vae"
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"no codec config: {config_file} does not exist")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"corrupt codec config {config_file}: {error}") from error
    if class_name not in _CODEC_CLASSES:
        raise ValueError(
            f"{config_file} names codec class {class_name!r}; known: {', '.join(_CODEC_CLASSES)}"
        )
    if class_name == "PixelCodec":
        return PixelCodec()
    weights_file = path / SAFETENSORS_WEIGHTS_NAME
    if not weights_file.is_file():
        raise FileNotFoundError(f"missing codec weights: {weights_file} does not exist")
    try:
        if class_name == "FrameAutoencoder":
            codec: Codec = FrameAutoencoder.from_pretrained(path)
        else:
            codec = CogVideoXVAECodec.from_pretrained(path)
    except (OSError, SafetensorError, RuntimeError, ValueError) as error:
        raise OSError(f"could not load codec weights {weights_file}: {error}") from error
    return codec.eval()


def frames_to_tensor(frames: np.ndarray | Tensor) -> Tensor:
    """Converts uint8 ``(..., H, W, 3)`` frames to float ``(..., 3, H, W)`` in ``[-1, 1]``."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got dtype {frames.dtype}")
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def tensor_to_frames(frames: Tensor) -> np.ndarray:
    """Converts float ``(..., 3, H, W)`` frames in ``[-1, 1]`` to uint8 ``(..., H, W, 3)`` numpy arrays."""
    pixels = frames.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()
