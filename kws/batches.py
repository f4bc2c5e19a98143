"""Training batches, made ready on the CPU: each process's share of a batch drawn from the split, augmented
and, for step 2, laid out in sequences (`prepare`). `prepared_batches` makes an epoch's batches in the
training process from the epoch's one generator, or in PyTorch DataLoader worker processes
(`kws train --workers N`) from a seed per batch, so that a GPU does not wait for the CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kws.augment import augment_audio, mix_noise, perturb
from kws.config import Config
from kws.data import SplitAudio, labels_for, make_batch
from kws.model import clip_steps
from kws.train_sequences import make_sequences


class Prepared(NamedTuple):
    """One process's share of a batch, made ready on the CPU: drawn, augmented and, for step 2, laid out in
    sequences. Only the SpecAugment masks, drawn on the device's features, are left to the step."""

    audio: torch.Tensor  # [batch, samples]
    labels: torch.Tensor  # clips: [batch] labels; sequences: the label of the clip that opens each (-1: none)
    allowed: torch.Tensor | None  # sequences: [batch, steps, labels] the labels allowed at each step


def prepare(audio: SplitAudio, share: torch.Tensor, config: Config, generator: torch.Generator) -> Prepared:
    """The examples `share` (indices into `audio`, -1: silence) as training audio, on the CPU."""
    waveforms, labels = make_batch(audio, share, config, generator, training=True)
    if not config.train.sequence_ms:
        return Prepared(augment_audio(waveforms, audio.noise, config.augment, config.features, generator), labels, None)
    clips = perturb(waveforms, config.augment, config.features, generator)
    batch = make_sequences(clips, labels, len(labels_for(config.data.keywords)), config,
                           clip_steps(config.features, config.model), generator, audio.speech)
    mixed = mix_noise(batch.audio, audio.noise, config.augment.noise_probability, config.augment.noise_gain_max,
                      generator)
    return Prepared(mixed, batch.clip_labels, batch.allowed)


class _Batches(torch.utils.data.Dataset):
    """An epoch's batches for worker processes: batch i is prepared from a seed of its own, so the workers
    may finish in any order and their number never changes the result."""

    def __init__(self, shares: list[torch.Tensor], audio: SplitAudio, config: Config, seed: int):
        self._shares, self._audio, self._config, self._seed = shares, audio, config, seed

    def __len__(self) -> int:
        return len(self._shares)

    def __getitem__(self, i: int) -> tuple[Prepared, torch.Tensor]:
        generator = torch.Generator().manual_seed((self._seed * 1_000_033 + i) % 2**63)
        # the generator goes on to the masks in the main process
        return prepare(self._audio, self._shares[i], self._config, generator), generator.get_state()


def prepared_batches(shares: list[torch.Tensor], audio: SplitAudio, config: Config, generator: torch.Generator,
                     workers: int, seed: int, pin: bool):
    """(prepared batch, the generator its step goes on with) for each share, in order: in this process from
    the epoch's one generator (workers 0), or in worker processes from a seed per batch."""
    if not workers:
        for share in shares:
            yield prepare(audio, share, config, generator), generator
        return
    loader = torch.utils.data.DataLoader(_Batches(shares, audio, config, seed), batch_size=None,
                                         num_workers=workers, pin_memory=pin, prefetch_factor=4)
    for batch, state in loader:
        generator = torch.Generator()
        generator.set_state(state)
        yield batch, generator
