"""Training sequences: clips in a row over background noise, with a target for every model step.

A model trained on aligned one-second clips is only ever asked about one offset of each word. A stream
asks it at every step, about whatever the last second holds: half a word, a word right after another,
noise. So here a few training clips are placed at random gaps in a longer stretch of audio, and every
LSTM step gets the set of labels it may give for the last clip's worth of audio (what the runtime reads):
- a keyword whose loud part lies wholly inside that window: only that keyword;
- otherwise silence or unknown, plus any keyword cut off by the window's edge (firing a little early or
  late on a word is fine; firing another keyword's label is not);
- a whole other word (or 300 ms of a stretch of speech) and no cut-off keyword: unknown; nothing at all:
  silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kws.config import Config, FeatureConfig, ModelConfig

SILENCE_ID, UNKNOWN_ID, FIRST_KEYWORD = 0, 1, 2  # the order of kws.data.labels_for
IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index


@dataclass(frozen=True)
class SequenceBatch:
    audio: torch.Tensor  # [batch, samples] float32, no noise yet
    allowed: torch.Tensor  # [batch, steps, n_labels] bool: the labels each step may give
    # [batch] label of the first clip where it starts at sample 0 (its last step then reads exactly the
    # clip, as the clip classifier does), else -100, cross-entropy's "ignore"
    clip_labels: torch.Tensor


def loud_bounds(clips: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last sample of each clip's loud part (10 ms frames at >= 10% of its loudest
    frame's RMS), [n] each; start == end for a silent clip."""
    n, samples = clips.shape
    rms = clips[:, : samples // hop * hop].reshape(n, -1, hop).pow(2).mean(dim=2).sqrt()  # [n, frames]
    loud = (rms >= 0.1 * rms.amax(dim=1, keepdim=True)) & (rms.amax(dim=1, keepdim=True) > 1e-4)
    frames = torch.arange(rms.shape[1])
    first = torch.where(loud, frames, rms.shape[1]).amin(dim=1)
    last = torch.where(loud, frames + 1, 0).amax(dim=1)
    return first.clamp(max=last) * hop, last * hop


def step_windows(n_steps: int, features: FeatureConfig, model: ModelConfig, window_steps: int):
    """Sample span [start, end) of the audio that step j's windowed readout covers, [n_steps] each."""
    steps = torch.arange(n_steps)
    hop, stack = features.hop_samples, model.frame_stack
    end = hop * (stack * steps + stack - 1) + features.fft_samples  # last sample read by the step's last frame
    start = hop * stack * (steps - window_steps + 1)
    return start, end


def _gaps(count: int, slots: int, free: int, generator: torch.Generator) -> torch.Tensor:
    """[count, slots + 1] random gaps (samples) that add up to `free`; half the sequences start with a
    clip at sample 0, as a clip on its own would."""
    cuts = torch.sort(torch.rand(count, slots, generator=generator), dim=1).values
    edges = torch.cat([torch.zeros(count, 1), cuts, torch.ones(count, 1)], dim=1)
    gaps = (edges.diff(dim=1) * free).long()
    aligned = torch.rand(count, generator=generator) < 0.5
    gaps[aligned, -1] += gaps[aligned, 0]
    gaps[aligned, 0] = 0
    return gaps


def _speech_in_gaps(audio: torch.Tensor, starts: torch.Tensor, clip_samples: int, speech: torch.Tensor,
                    config: Config, generator: torch.Generator):
    """Fill a share (`config.train.speech_gaps`) of the gaps between clips with stretches of real speech,
    leaving a pause of up to 0.3 s next to each clip, as people leave around a command. Returns the audio
    and each stretch's [start, end) in samples, [count, slots + 1] each (start == end: no speech there)."""
    count, slots = starts.shape
    length = audio.shape[1]
    features = config.features
    gap_start = torch.cat([torch.zeros(count, 1, dtype=torch.long), starts + clip_samples], dim=1)
    gap_end = torch.cat([starts, torch.full((count, 1), length)], dim=1)  # [count, slots + 1]
    pauses = (torch.rand(count, slots + 1, 2, generator=generator) * features.ms_to_samples(300)).long()
    start = gap_start + torch.where(gap_start > 0, pauses[..., 0], 0)
    end = gap_end - torch.where(gap_end < length, pauses[..., 1], 0)
    used = torch.rand(count, slots + 1, generator=generator) < config.train.speech_gaps
    used &= end - start >= features.ms_to_samples(200)
    end = torch.where(used, end, start)
    offsets = (torch.rand(count, slots + 1, generator=generator) * (len(speech) - length)).long()
    gains = torch.empty(count, slots + 1).uniform_(0.5, 1.0, generator=generator)
    positions = torch.arange(length)
    for gap in range(slots + 1):
        inside = (positions >= start[:, gap, None]) & (positions < end[:, gap, None])  # [count, length]
        source = (offsets[:, gap, None] + positions).clamp(max=len(speech) - 1)
        audio = audio + torch.where(inside, speech[source] * gains[:, gap, None], 0.0)
    return audio, start, end


def make_sequences(clips: torch.Tensor, labels: torch.Tensor, n_labels: int, config: Config,
                   window_steps: int, generator: torch.Generator,
                   speech: torch.Tensor | None = None) -> SequenceBatch:
    """Clips [batch * k, clip_samples] with labels [batch * k] -> `batch` sequences of
    `config.train.sequence_ms`, k = clips_per_sequence clips each, in the order given. With `speech`
    ([samples] of real speech without keywords), some gaps hold stretches of it, as other words."""
    features = config.features
    slots = config.train.clips_per_sequence(features)
    length = features.ms_to_samples(config.train.sequence_ms)
    count = len(clips) // slots
    clips, labels = clips[: count * slots], labels[: count * slots]
    clip_samples = clips.shape[1]
    starts = _gaps(count, slots, length - slots * clip_samples, generator)[:, :-1].cumsum(dim=1)
    starts = starts + clip_samples * torch.arange(slots)  # [count, slots], where each clip begins
    audio = torch.zeros(count, length)
    positions = torch.arange(length)
    for slot in range(slots):
        source = positions - starts[:, slot, None]  # [count, length], index into the clip
        inside = (source >= 0) & (source < clip_samples)
        audio += torch.where(inside, clips[slot::slots].gather(1, source.clamp(0, clip_samples - 1)), 0.0)

    first, last = loud_bounds(clips, features.hop_samples)
    event_start = starts + first.reshape(count, slots)  # [count, events]
    event_end = starts + last.reshape(count, slots)
    event_label = labels.reshape(count, slots)
    stretch = torch.zeros(1, 1, slots, dtype=torch.bool)  # [1, 1, events]: events that are speech stretches
    if speech is not None and config.train.speech_gaps > 0 and len(speech) > length:
        audio, speech_start, speech_end = _speech_in_gaps(audio, starts, clip_samples, speech, config, generator)
        event_start = torch.cat([event_start, speech_start], dim=1)
        event_end = torch.cat([event_end, speech_end], dim=1)
        event_label = torch.cat([event_label, torch.full_like(speech_start, UNKNOWN_ID)], dim=1)
        stretch = torch.cat([stretch, torch.ones(1, 1, speech_start.shape[1], dtype=torch.bool)], dim=2)
    real = (event_label != SILENCE_ID) & (event_end > event_start)
    keyword = real & (event_label >= FIRST_KEYWORD)

    n_steps = features.frames(length) // config.model.frame_stack
    window_start, window_end = step_windows(n_steps, features, config.model, window_steps)
    ws, we = window_start[None, :, None], window_end[None, :, None]  # [1, steps, 1]
    es, ee = event_start[:, None, :], event_end[:, None, :]  # [count, 1, events]
    # A word is heard when its loud part lies wholly in the window; a stretch of speech, longer than the
    # window perhaps, once the window holds 300 ms of it (or all of a shorter one).
    overlap = torch.minimum(ee, we) - torch.maximum(es, ws)
    heard_speech = overlap >= torch.clamp(ee - es, max=features.ms_to_samples(300))
    whole = real[:, None, :] & torch.where(stretch, heard_speech, (es >= ws) & (ee <= we))  # [count, steps, events]
    cut = real[:, None, :] & (ee > ws) & (es < we) & ~whole
    one_hot = torch.nn.functional.one_hot(event_label, n_labels).bool()  # [count, events, n_labels]

    def labels_of(events: torch.Tensor) -> torch.Tensor:  # [count, steps, events] -> [count, steps, n_labels]
        return (events[..., None] & one_hot[:, None]).any(dim=2)

    whole_keyword = labels_of(whole & keyword[:, None, :])
    cut_keyword = labels_of(cut & keyword[:, None, :])
    anything = (whole | cut).any(dim=2)  # [count, steps]
    only_unknown = (whole & ~keyword[:, None, :]).any(dim=2) & ~cut_keyword.any(dim=2)
    background = cut_keyword.clone()
    background[..., SILENCE_ID] = ~only_unknown
    background[..., UNKNOWN_ID] = anything
    allowed = torch.where(whole_keyword.any(dim=2, keepdim=True), whole_keyword, background)
    clip_labels = torch.where(starts[:, 0] == 0, event_label[:, 0], IGNORE)
    return SequenceBatch(audio, allowed, clip_labels)


def window_max(frame_logits: torch.Tensor, steps: int) -> torch.Tensor:
    """[batch, steps_total, n] -> same shape: each step's max over itself and the `steps - 1` before it,
    the runtime's readout of a stream (a clip's readout at its last step)."""
    padded = torch.nn.functional.pad(frame_logits.transpose(1, 2), (steps - 1, 0), value=float("-inf"))
    return torch.nn.functional.max_pool1d(padded, steps, stride=1).transpose(1, 2)


def sequence_loss(logits: torch.Tensor, allowed: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """-log P(any allowed label) per step, with label smoothing toward the uniform distribution.
    logits [batch, steps, n], allowed [batch, steps, n] bool.

    The few steps that must name a keyword weigh as much as all the others together: they are what
    the model is for, and without the balance the many silent steps would drown them."""
    log_total = torch.logsumexp(logits, dim=-1)
    log_allowed = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    uniform = log_total - logits.mean(dim=-1)
    losses = (1 - smoothing) * (log_total - log_allowed) + smoothing * uniform  # [batch, steps]
    keyword = allowed[..., FIRST_KEYWORD:].any(dim=-1) & (allowed.sum(dim=-1) == 1)
    if keyword.all() or not keyword.any():
        return losses.mean()
    return 0.5 * losses[keyword].mean() + 0.5 * losses[~keyword].mean()
