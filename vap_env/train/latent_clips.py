"""Training data of the world model: clips of cached codec latents and the order they are drawn in.

The codec is frozen, so the latents of every training frame are computed once and kept in memory
(:class:`LatentClips`); :class:`EpochBatchSampler` draws batches of them as a pure function of the batch's
index, so a resumed run draws exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from vap_env.data import Episode
from vap_env.model.codec import frames_to_tensor
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.model.config import WorldModelConfig
from vap_env.prompts.kinds import prompt_kind
from vap_env.train.clip_cache import ClipCache
from vap_env.train.clips import ClipConfig, ClipDataset
from vap_env.train.config import WorldModelTrainConfig


def check_data_fits(config: WorldModelConfig, episodes: list[Episode], where: str) -> None:
    """Raises ``ValueError`` if the episodes are of another robot or image size than the model."""
    robots, sizes = {e.robot for e in episodes}, {tuple(e.image_size) for e in episodes}
    if robots != {config.robot} or sizes != {tuple(config.image_size)}:
        found = ", ".join(f"{r} at {h}x{w}" for r in sorted(robots) for h, w in sorted(sizes))
        h, w = config.image_size
        raise ValueError(
            f"the data in {where} is {found}, but the model is for {config.robot} at {h}x{w}: record data "
            "for the model's robot and image size, or train a new model"
        )


def make_clips(
    model_config: WorldModelConfig,
    config: WorldModelTrainConfig,
    train: list[Episode],
    heldout: list[Episode],
    where: tuple[str, str],
    cache: ClipCache | None = None,
    progress: bool = False,
) -> tuple[ClipDataset, ClipDataset]:
    """The training and held-out clips for the model, after checking that the episodes fit it.

    Args:
        model_config: The model (robot, image size, prompt kind, frames, state size).
        config: The interaction-region settings.
        train: Training episodes.
        heldout: Held-out episodes.
        where: The directories of both, for error messages.
        cache: Where the episodes' rendered prompts and warped frames are kept; ``None``: rendered anew.
        progress: Show a progress bar over the training episodes.

    Raises:
        ValueError: If the episodes are of another robot, image size or state size than the model.
    """
    check_data_fits(model_config, train, where[0])
    check_data_fits(model_config, heldout, where[1])
    clip_config = ClipConfig(
        prompt=model_config.prompt,
        context_frames=model_config.context_frames,
        target_frames=model_config.frames_per_step,
        interaction_weight=config.interaction_weight,
        interaction_radius=config.interaction_radius,
        object_weight=config.object_weight,
        warped_context=model_config.warped_context,
        object_warp=model_config.object_warp,
    )
    # training on the model's own rollouts needs the frames they start from; validation clips stay plain
    rollout = dataclasses.replace(
        clip_config, rollout_frames=config.rollout_frames if config.rollout_fraction else 0
    )
    train_clips = ClipDataset(train, rollout, progress=progress, cache=cache)
    heldout_clips = ClipDataset(heldout, clip_config, cache=cache)
    vector = prompt_kind(model_config.prompt).conditioning == "vector"
    if vector and train_clips.prompts[0].shape[-1] != model_config.state_dim:
        raise ValueError(
            f"the data's {model_config.prompt} prompts have {train_clips.prompts[0].shape[-1]} values, the model's "
            f"`state_dim` is {model_config.state_dim}"
        )
    return train_clips, heldout_clips


class LatentClips(torch.utils.data.Dataset):
    """The clips of a :class:`ClipDataset` with their frames replaced by cached codec latents.

    A per-frame codec (``temporal_factor`` 1) encodes every frame once and clips are cut from those; a
    temporal codec encodes each clip whole. Items: ``latents`` ``(Tc' + Tf', C, h, w)`` float32,
    ``prompts`` as the clip dataset gives them, ``weight`` ``(Tf, 1, H, W)``.

    Args:
        clips: The clips.
        model: The model whose codec encodes them (on its device); the cache lives on the CPU.
        batch_size: Frames (or clips) encoded at a time.
    """

    def __init__(self, clips: ClipDataset, model: ActionToVideoModel, batch_size: int = 64) -> None:
        self.clips = clips
        self.per_frame = model.codec.temporal_factor == 1
        if clips.config.rollout_frames and not self.per_frame:
            raise ValueError(
                "training on the model's own rollouts needs a per-frame codec (temporal factor 1), this model's "
                f"has temporal factor {model.codec.temporal_factor}: set `rollout_fraction` to 0"
            )
        self.cache: list[Tensor] = []
        self.warped_cache: list[Tensor] = []  # the motion-compensated frames' latents, per episode

        def encode(frames: np.ndarray) -> Tensor:
            parts = [
                model.codec.encode(frames_to_tensor(frames[i : i + batch_size])[None].to(model.device))
                for i in range(0, len(frames), batch_size)
            ]
            return torch.cat(parts, dim=1)[0].float().cpu()

        with torch.no_grad():
            if self.per_frame:
                self.cache = [encode(frames) for frames in clips.frames]  # (T, H, W, 3) uint8 per episode
                self.warped_cache = [encode(frames) for frames in clips.warped]
            else:
                for start in range(0, len(clips), batch_size):
                    items = [clips[i] for i in range(start, min(start + batch_size, len(clips)))]
                    context = torch.stack([item["context"] for item in items])
                    target = torch.stack([item["target"] for item in items])
                    self.cache.extend(model.encode_clip(context, target).float().cpu().unbind(0))

    def __len__(self) -> int:
        return len(self.clips)

    def change_std(self, num_target_latents: int, max_clips: int = 4096) -> float:
        """Standard deviation of the target latents' change from the latent before them (the last context's).

        Over up to ``max_clips`` clips spread evenly over the dataset: what a ``change`` model's scale is
        measured from (``WorldModelConfig.change_scale``; the trainer adds the context noise's variance).
        """
        step = max(1, len(self) // max_clips)
        changes = []
        for index in range(0, len(self), step):
            latents = self._latents(index)
            n = len(latents) - num_target_latents
            changes.append(latents[n:] - latents[n - 1])
        return torch.stack(changes).std().item()

    def _latents(self, index: int) -> Tensor:
        if self.per_frame:
            episode, start = self.clips.index[index]
            at = self.clips.frame_indices(start)
            latents = self.cache[episode][at]
            if self.warped_cache:  # as ClipDataset cuts the frames
                c = self.clips.config.leading_frames
                warped = self.warped_cache[episode][at[c - 1]][None]
                latents = torch.cat([latents[1:c], warped, latents[c:]])
            return latents
        return self.cache[index]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.clips[index]
        latents = self._latents(index)
        return {"latents": latents, "prompts": item["prompts"], "weight": item["weight"]}


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Endless batches of clip indices: a fresh seeded permutation per epoch, sharded over processes.

    Batch ``k`` is a pure function of ``(seed, k, process)``, so a run resumed at micro-batch ``k`` draws
    exactly the batches an uninterrupted run would, with no sampler state to save (and ``DataLoader``
    workers prefetching ahead change nothing). Each process takes every ``num_processes``-th index of the
    permutation, as ``accelerate``'s sharding would; the last incomplete batch of an epoch is dropped.

    Args:
        num_items: Clips in the dataset.
        batch_size: Clips per batch.
        seed: Seed of the permutations.
        process_index: This process.
        num_processes: Processes sharing the data.
        start: The first batch to yield (micro-batches already consumed).
        repeats: ``(num_items,)`` how many times each clip is drawn per epoch (``contact_repeat``); ``None``:
            once each.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
        start: int = 0,
        repeats: np.ndarray | None = None,
    ) -> None:
        self.pool = torch.arange(num_items)
        if repeats is not None:
            repeats = torch.as_tensor(np.asarray(repeats), dtype=torch.long)
            if repeats.shape != (num_items,) or (repeats < 1).any():
                raise ValueError(
                    f"`repeats` must be {num_items} counts >= 1, got shape {tuple(repeats.shape)}"
                )
            self.pool = torch.repeat_interleave(self.pool, repeats)
        num_items = len(self.pool)
        self.batches_per_epoch = num_items // num_processes // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{num_items} training clips cannot fill a batch of {batch_size} on each of {num_processes} "
                "process(es): lower the batch size or record more episodes"
            )
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.process_index, self.num_processes, self.start = process_index, num_processes, start

    def __iter__(self) -> Iterator[list[int]]:
        batch, epoch, order = self.start, -1, torch.empty(0, dtype=torch.long)
        while True:
            if batch // self.batches_per_epoch != epoch:
                epoch = batch // self.batches_per_epoch
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = self.pool[torch.randperm(self.num_items, generator=generator)][
                    self.process_index :: self.num_processes
                ]
            offset = (batch % self.batches_per_epoch) * self.batch_size
            yield order[offset : offset + self.batch_size].tolist()
            batch += 1
