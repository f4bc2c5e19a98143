import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from kws.config import Config, ModelConfig, TrainConfig
from kws.model import clip_logits_from_frames, clip_steps
from kws.train_sequences import loud_bounds, make_sequences, sequence_loss, step_windows, window_max
from kws.train import train

RATE, CLIP = 16000, 16000
SILENCE, UNKNOWN, YES, NO = 0, 1, 2, 3


def _burst(start: int, end: int, seed: int) -> torch.Tensor:
    clip = torch.zeros(CLIP)
    clip[start:end] = 0.5 * torch.randn(end - start, generator=torch.Generator().manual_seed(seed))
    return clip


def test_loud_bounds_find_the_word_and_nothing_in_silence():
    clips = torch.stack([_burst(4000, 10000, 0), torch.zeros(CLIP), _burst(0, 16000, 1)])
    start, end = loud_bounds(clips, 160)
    assert start.tolist() == [4000, 0, 0]
    assert end.tolist() == [10080, 0, 16000]  # the frame holding sample 10000 still counts


def test_step_windows_are_a_clip_wide_and_end_where_the_step_ends():
    config = Config(model=ModelConfig(frame_stack=3))
    window = clip_steps(config.features, config.model)
    start, end = step_windows(40, config.features, config.model, window)
    assert window == 32
    # step j reads frames 3j..3j+2; frame i reads samples [160 i, 160 i + 512)
    assert end[0] == 160 * 2 + 512 and end[39] == 160 * (3 * 39 + 2) + 512
    assert (end - start).unique().tolist() == [160 * 3 * 31 + 160 * 2 + 512]


def _allowed_runs(allowed: torch.Tensor) -> list[tuple[int, frozenset]]:
    """[steps, n] -> (first step, allowed labels) of every run of equal sets."""
    runs = []
    for step, row in enumerate(allowed):
        labels = frozenset(torch.nonzero(row).flatten().tolist())
        if not runs or runs[-1][1] != labels:
            runs.append((step, labels))
    return runs


def _sequence(clips, labels, seed=0):
    config = Config(train=TrainConfig(sequence_ms=3000))
    window = clip_steps(config.features, config.model)
    return make_sequences(torch.stack(clips), torch.tensor(labels), 4, config, window,
                          torch.Generator().manual_seed(seed)), config, window


def test_each_step_may_give_the_whole_keyword_in_its_window_and_nothing_else():
    batch, config, window = _sequence([_burst(4000, 10000, 0), _burst(2000, 8000, 1)], [YES, UNKNOWN])
    assert batch.audio.shape == (1, 3 * RATE)
    runs = _allowed_runs(batch.allowed[0])
    sets = [labels for _, labels in runs]
    # silence, the keyword coming in, the keyword whole, going out, the other word, and silence again
    assert sets[0] == {SILENCE}
    assert sets[1] == {SILENCE, UNKNOWN, YES}
    assert sets[2] == {YES}
    assert {UNKNOWN} in sets and sets[-1] == {SILENCE}
    assert not any(NO in labels for labels in sets)
    # the keyword-only steps are exactly those whose window holds the whole loud part
    where = torch.nonzero(batch.allowed[0].sum(dim=1) == 1).flatten()
    start, end = step_windows(batch.allowed.shape[1], config.features, config.model, window)
    keyword_steps = [int(s) for s in where if batch.allowed[0, s, YES]]
    begins = int(torch.nonzero(batch.audio[0].abs() > 0).flatten()[0])  # the first sample of the burst
    for step in range(batch.allowed.shape[1]):
        whole = start[step] <= begins and end[step] >= begins + 6080
        assert (step in keyword_steps) == bool(whole), step


def test_speech_in_the_gaps_is_unknown_and_never_on_a_clip():
    config = Config(train=TrainConfig(sequence_ms=3000, speech_gaps=1.0))
    window = clip_steps(config.features, config.model)
    speech = 0.3 * torch.ones(20 * RATE)  # constant, so the filled samples are easy to find
    clips = torch.stack([_burst(4000, 10000, s) for s in range(40)])
    labels = torch.tensor([YES, NO] * 20)
    batch = make_sequences(clips, labels, 4, config, window, torch.Generator().manual_seed(0), speech)
    plain = make_sequences(clips, labels, 4, config, window, torch.Generator().manual_seed(0))
    filled = batch.audio != plain.audio  # [count, samples]: where speech went
    assert filled.any(dim=1).float().mean() >= 0.75  # most sequences have a gap long enough for speech
    assert (plain.audio[filled] == 0).all()  # only into gaps, never on a clip
    assert ((batch.audio[filled] >= 0.15) & (batch.audio[filled] <= 0.3)).all()  # at half to full level
    start, end = step_windows(batch.allowed.shape[1], config.features, config.model, window)
    for row in range(len(batch.audio)):
        for step in range(batch.allowed.shape[1]):
            heard = int(filled[row, max(0, int(start[step])):int(end[step])].sum())
            allowed = set(torch.nonzero(batch.allowed[row, step]).flatten().tolist())
            if heard >= 300 * 16 and allowed.isdisjoint({YES, NO}):
                assert allowed == {UNKNOWN}, (row, step)  # a window with speech in it is not silence
        # a keyword whose window also holds speech is still the keyword
        assert batch.allowed[row, :, YES].any() or batch.allowed[row, :, NO].any()
    assert torch.equal(batch.allowed[:, :, YES] & (batch.allowed.sum(dim=2) == 1),
                       plain.allowed[:, :, YES] & (plain.allowed.sum(dim=2) == 1))


def test_silence_clips_and_noise_bursts_give_silence():
    loud_noise = torch.ones(CLIP) * 0.9
    batch, _, _ = _sequence([torch.zeros(CLIP), loud_noise], [SILENCE, SILENCE])
    assert _allowed_runs(batch.allowed[0]) == [(0, {SILENCE})]


def test_clips_keep_their_order_and_samples():
    clips = [_burst(4000, 10000, 0), _burst(2000, 8000, 1), _burst(0, 3000, 2), _burst(9000, 16000, 3)]
    batch, _, _ = _sequence(clips, [YES, UNKNOWN, NO, SILENCE], seed=3)
    assert batch.audio.shape == (2, 3 * RATE)
    for row, (first, second) in enumerate([(clips[0], clips[1]), (clips[2], clips[3])]):
        nonzero = batch.audio[row][batch.audio[row] != 0]
        assert torch.equal(nonzero, torch.cat([first[first != 0], second[second != 0]]))


def test_only_sequences_that_open_with_a_whole_clip_carry_its_label():
    clips = [_burst(4000, 10000, i) for i in range(64)]
    labels = [YES if i % 2 else UNKNOWN for i in range(64)]
    batch, _, window = _sequence(clips, labels, seed=5)
    aligned = batch.clip_labels >= 0
    assert 0 < int(aligned.sum()) < 32  # about half
    for row in range(32):
        opens_with_clip = bool(batch.audio[row, 4000] != 0)  # the first burst starts at sample 4000
        assert bool(aligned[row]) == opens_with_clip
        if opens_with_clip:
            assert batch.clip_labels[row] == labels[2 * row]


def test_window_max_is_the_clip_readout_at_a_clips_last_step():
    config = ModelConfig()
    frames = torch.randn(3, 50, 6)
    pooled = window_max(frames, 32)
    for step in (0, 10, 31, 49):
        expected = clip_logits_from_frames(frames[:, max(0, step - 31): step + 1], config)
        assert torch.equal(pooled[:, step], expected)


def test_sequence_loss_with_one_allowed_label_is_cross_entropy():
    logits = torch.randn(2, 7, 5)
    targets = torch.randint(0, 2, (2, 7))  # silence and unknown only: no balancing
    allowed = F.one_hot(targets, 5).bool()
    for smoothing in (0.0, 0.1):
        expected = F.cross_entropy(logits.reshape(-1, 5), targets.flatten(), label_smoothing=smoothing)
        assert torch.allclose(sequence_loss(logits, allowed, smoothing), expected, atol=1e-6)
    # allowing every label costs nothing
    assert sequence_loss(logits, torch.ones_like(allowed)).abs() < 1e-6


def test_keyword_steps_weigh_as_much_as_all_other_steps():
    logits = torch.zeros(1, 10, 4)
    logits[0, :, SILENCE] = 5.0  # every step says silence
    targets = torch.full((1, 10), SILENCE)
    targets[0, 3] = YES  # one step should have said "yes"
    allowed = F.one_hot(targets, 4).bool()
    step_losses = F.cross_entropy(logits[0], targets[0], reduction="none")
    expected = 0.5 * step_losses[3] + 0.5 * step_losses[targets[0] == SILENCE].mean()
    assert torch.allclose(sequence_loss(logits, allowed), expected)


def test_sequence_training_lowers_the_loss(tiny_data, tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, sequence_ms=2500))
    train(tiny_data, tmp_path / "run", config, progress=False, echo=lambda line: None)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_a_sequence_shorter_than_two_clips_is_refused(tiny_data, tmp_path, capsys):
    from kws.cli import main
    from kws.errors import KwsError

    with pytest.raises(KwsError, match="longer than a clip"):
        Config(train=TrainConfig(sequence_ms=800))
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--sequence-ms", "800"]) == 2
    assert "longer than a clip" in capsys.readouterr().err
