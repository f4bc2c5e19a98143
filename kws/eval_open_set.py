"""`kws eval-open-set`: what a model does with speech that holds none of its commands.

Measured on speakers, words and recordings that training never saw, through the edge runtime with the
model's stored detection settings (as `edge.listen` runs it):

1. **false alarms per hour on real speech without commands**: the split's continuous speech (held-out
   LibriSpeech speakers) and any recording a user passes; and, reported apart, the split's isolated words
   one after another (a harder test: every one of them is a word on its own, as a command would be);
2. **other words accepted as a command**: each held-out word alone, with silence around it; per source,
   per word, "on" and "off" on their own (for a model trained with an on/off fold, on the speakers of
   that fold, whom training never heard), and the words that no training run hears
   (`kws.data.held_out_word`);
3. **commands among other speech**: a stream of validation commands with other words and stretches of
   real speech between them, at gaps as short as people leave: matched, wrong label, false alarms per hour.

The other-speech folder is split as `kws.other_speech` splits it for training: "validation" is for
choosing a model, "testing" is kept untouched until a model is chosen and reported once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge.detect import DetectorSettings
from edge.runtime import Recognizer
from kws.config import Config
from kws.data import AUDIO_SUFFIXES, held_out_word, load_audio, load_split, scan
from kws.errors import KwsError
from kws.evaluate import load_predictor
from kws.eval_audio import Piece, build_mixed_stream
from kws.eval_scoring import StepScores, detect, run_model, score_events
from kws.eval_stream import report
from kws.eval_stream import table as stream_table
from kws.other_speech import HELD_OUT, ON_OFF, OPUS_SUFFIXES, Recording, loudest_window, scan_other_speech

SPEECH_GAP_S = (0.2, 1.0)  # between isolated words played one after another
WORD_PADDING_S = (0.5, 1.0)  # silence before and after a word tested alone


@dataclass(frozen=True)
class WordTrial:
    """One held-out other word: the runtime's scores on it alone, and the clip classifier's answer."""

    source: str
    word: str
    scores: StepScores  # the streaming runtime over silence, the word, silence
    classified_as: str  # the window model's label (argmax) for the word's loudest clip-length part


@dataclass(frozen=True)
class OpenSetScores:
    """The runtime's step scores on every part of the measurement, before detection, so that detection
    settings can be replayed without running the model again."""

    speech: dict[str, StepScores]  # source -> its continuous speech without commands, end to end
    words_in_a_row: dict[str, StepScores]  # source -> its isolated other words, one after another
    words: list[WordTrial]
    stream: StepScores
    stream_words: list  # kws.eval_scoring.Word, the truth of the stream
    never_trained: frozenset[str]  # words no training run hears
    on_off_fold: int = -1  # the model's held-out on/off fold, whose speakers said the on/off clips measured


def _recordings(other: Path, split: str, config: Config, labels: tuple[str, ...]) -> list[Recording]:
    """The split's recordings, and the on/off clips of the speakers that the model's on/off fold held out."""
    chosen = [r for r in scan_other_speech(other, config.data) if r.word not in labels and
              (r.split == split or (r.split == HELD_OUT and r.word in ON_OFF))]
    if not chosen:
        raise KwsError(f"{other} has no {split} recordings")
    return chosen


def _audio_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise KwsError(f"--negatives {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES | OPUS_SUFFIXES)
    if not files:
        raise KwsError(f"--negatives {path} holds no audio files")
    return files


def _one_after_another(clips: list[np.ndarray], rate: int, gap_s: tuple[float, float], seed: int) -> np.ndarray:
    """Clips joined with random silent gaps, [samples] float32."""
    rng = np.random.default_rng(seed)
    parts = []
    for clip in clips:
        parts += [clip, np.zeros(int(rng.uniform(*gap_s) * rate), np.float32)]
    return np.concatenate(parts).astype(np.float32)


def _long_recordings(recordings: list[Recording], negatives: list[Path], rate: int,
                     seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Long recordings without commands: per source (and age group, where it has them), (its continuous
    speech, its words in a row); every file or folder in `negatives` is a source of continuous speech."""
    speech: dict[str, list[np.ndarray]] = {}
    words: dict[str, list[np.ndarray]] = {}
    for r in recordings:
        (speech if r.continuous else words).setdefault(r.part, []).append(load_audio(r.path, rate))
    for path in negatives:
        speech[str(path)] = [load_audio(p, rate) for p in _audio_files(path)]
    return tuple({key: _one_after_another(clips, rate, SPEECH_GAP_S, seed) for key, clips in parts.items()}
                 for parts in (speech, words))


def _word_trials(predict, recognizer: Recognizer, clips: list[tuple[str, str, np.ndarray]], config: Config,
                 progress: bool) -> list[WordTrial]:
    """Each word through the streaming runtime with silence around it, and its loudest clip-length part
    through the window model (`predict`: waveforms -> logits)."""
    rate, labels = recognizer.sample_rate, recognizer.labels
    before, after = (np.zeros(int(s * rate), np.float32) for s in WORD_PADDING_S)
    windows = np.stack([loudest_window(clip, config.features.clip_samples, config.features.hop_samples)
                        for _, _, clip in clips])
    classified = [labels[i] for i in predict(torch.from_numpy(windows)).argmax(dim=1).tolist()]
    return [WordTrial(source, word, run_model(recognizer, np.concatenate([before, clip, after]), progress=False), label)
            for (source, word, clip), label in tqdm(list(zip(clips, classified)), desc="other words", unit="word",
                                                    disable=not progress, leave=False)]


def held_out_speech(model: str | Path, other: str | Path, split: str = "validation", seed: int = 0) -> np.ndarray:
    """The split's speech from an other-speech folder, all of it end to end (continuous speech, then its
    isolated words one after another) at the model's rate: audio in which none of the model's keywords is
    spoken, by speakers that training on that folder never heard."""
    _, config, _ = load_predictor(Path(model))
    recognizer = Recognizer.from_onnx(model)
    speech, words = _long_recordings(_recordings(Path(other), split, config, recognizer.labels), [],
                                     recognizer.sample_rate, seed)
    return np.concatenate([*speech.values(), *words.values()]).astype(np.float32)


def speech_false_alarms(model: str | Path, other: str | Path, split: str = "validation",
                        negatives: tuple[Path, ...] = (), seed: int = 0) -> dict:
    """Part 1 alone, at the model's stored settings: false alarms on the split's continuous speech and on
    the `negatives` recordings, per source and for all (as `open_set_report(...)["speech"]`)."""
    _, config, _ = load_predictor(Path(model))
    recognizer = Recognizer.from_onnx(model)
    recordings = _recordings(Path(other), split, config, recognizer.labels)
    speech, _ = _long_recordings(recordings, list(negatives), recognizer.sample_rate, seed)
    return _false_alarms({key: run_model(recognizer, audio, progress=False) for key, audio in speech.items()},
                         recognizer.settings)


def score_open_set(model: str | Path, data: str | Path, other: str | Path, split: str = "validation",
                   negatives: tuple[Path, ...] = (), minutes: float = 30.0, seed: int = 0,
                   progress: bool = True) -> OpenSetScores:
    """Run the model over all three parts of the measurement; `split` picks the other-speech speakers."""
    if split not in ("validation", "testing"):
        raise KwsError(f"the open-set measurement runs on held-out speech: split 'validation' or 'testing', "
                       f"not {split!r}")
    predict, config, _ = load_predictor(Path(model))  # a missing or broken model: a KwsError
    recognizer = Recognizer.from_onnx(model)
    rate = recognizer.sample_rate
    recordings = _recordings(Path(other), split, config, recognizer.labels)
    speech, words_in_a_row = ({key: run_model(recognizer, audio, progress=False) for key, audio in part.items()}
                              for part in _long_recordings(recordings, list(negatives), rate, seed))

    index = scan(data, config.data)
    commands = load_split(index, "validation", recognizer.labels[2:], config)
    own_words = [(clip.path, clip.word) for clip in index.clips_of("validation")
                 if clip.word not in recognizer.labels]
    clips = [("speech_commands", word, load_audio(path, rate)) for path, word in own_words]
    clips += [(r.source, r.word, load_audio(r.path, rate)) for r in recordings if not r.continuous]
    words = _word_trials(predict, recognizer, clips, config, progress)

    others = [Piece("_unknown_", audio) for _, _, audio in clips]
    speech_recordings = [load_audio(r.path, rate) for r in recordings if r.continuous]
    audio, truth = build_mixed_stream(commands, recognizer.labels, config, 60 * minutes, others, speech_recordings,
                                      seed=seed)
    stream = run_model(recognizer, audio, progress=progress)
    never_trained = frozenset(word for _, word, _ in clips if held_out_word(word, config.data.held_out_words_percent))
    return OpenSetScores(speech, words_in_a_row, words, stream, truth, never_trained, config.data.on_off_fold)


def _share(trials: list[WordTrial], fired: dict[int, list], labels: tuple[str, ...]) -> dict:
    """How many of these words the runtime fired on, and how many the clip classifier called a command."""
    accepted = sum(bool(fired[id(t)]) for t in trials)
    called = sum(t.classified_as in labels[2:] for t in trials)

    def percent(n):
        return round(100 * n / len(trials), 2) if trials else None

    return {"clips": len(trials), "accepted": accepted, "accepted_percent": percent(accepted),
            "called_command": called, "called_command_percent": percent(called)}


def _false_alarms(parts: dict[str, StepScores], settings: DetectorSettings) -> dict:
    """Per source and for all: minutes, events (every one a false alarm), per hour, and their labels."""
    rows = {}
    for key, part in parts.items():
        events = detect(part, settings)
        rows[key] = {"minutes": round(part.seconds / 60, 2), "false_alarms": len(events),
                     "false_alarms_per_hour": round(len(events) * 3600 / part.seconds, 2),
                     "fired_as": dict(Counter(label for label, _ in events))}
    total_s = sum(part.seconds for part in parts.values())
    total = sum(row["false_alarms"] for row in rows.values())
    rows["all"] = {"minutes": round(total_s / 60, 2), "false_alarms": total,
                   "false_alarms_per_hour": round(total * 3600 / total_s, 2) if total_s else None}
    return rows


def open_set_report(scores: OpenSetScores, settings: DetectorSettings | None = None) -> dict:
    """JSON-ready figures of all three parts, with `settings` (default: the model's own)."""
    settings = settings or scores.stream.settings
    speech = _false_alarms(scores.speech, settings)
    words_in_a_row = _false_alarms(scores.words_in_a_row, settings)

    fired = {id(t): detect(t.scores, settings) for t in scores.words}
    labels = scores.stream.labels

    def share(chosen) -> dict:
        return _share(list(chosen), fired, labels)

    by_source: dict[str, list[WordTrial]] = {}
    by_word: dict[str, list[WordTrial]] = {}
    for trial in scores.words:
        by_source.setdefault(trial.source, []).append(trial)
        by_word.setdefault(trial.word, []).append(trial)
    words = {
        "all": share(scores.words),
        "per_source": {source: share(trials) for source, trials in sorted(by_source.items())},
        **{word: share(by_word.get(word, [])) for word in ON_OFF},
        "on_off_fold": scores.on_off_fold,
        "never_trained": share(t for t in scores.words if t.word in scores.never_trained),
        "per_word": {word: {**share(trials), "never_trained": word in scores.never_trained,
                            "fired_as": dict(Counter(fired[id(t)][0][0] for t in trials if fired[id(t)])),
                            "classified_as": dict(Counter(t.classified_as for t in trials))}
                     for word, trials in sorted(by_word.items())},
    }
    stream_result = score_events(detect(scores.stream, settings), scores.stream_words, scores.stream.seconds)
    stream = report(stream_result, settings, scores.stream)
    stream["other_words"] = sum(not w.is_keyword for w in scores.stream_words)
    return {"speech": speech, "words_in_a_row": words_in_a_row, "words": words, "stream": stream}


def table(figures: dict) -> str:
    """The report as short text tables."""
    def pct(value) -> str:
        return "-" if value is None else f"{value:.1f}%"

    lines = []
    for part, title in (("speech", "false alarms on speech without commands:"),
                        ("words_in_a_row", "false alarms on other words one after another:")):
        lines += [title, f"  {'source':<44} {'minutes':>7} {'events':>6} {'per hour':>8}"]
        for key, row in figures[part].items():
            per_hour = "-" if row["false_alarms_per_hour"] is None else f"{row['false_alarms_per_hour']:.1f}"
            lines.append(f"  {key[-44:]:<44} {row['minutes']:>7.1f} {row['false_alarms']:>6} {per_hour:>8}")
    words = figures["words"]
    lines += ["other words, each alone: accepted by the runtime / called a command by the clip classifier:",
              f"  {'words':<44} {'clips':>7} {'accepted':>8} {'called':>8}"]
    speakers = "held-out fold" if words.get("on_off_fold", -1) >= 0 else "split"
    rows = [*words["per_source"].items(), *((f"'{w}' ({speakers} speakers)", words[w]) for w in ON_OFF),
            ("words never trained on", words["never_trained"]), ("all", words["all"])]
    for key, row in rows:
        lines.append(f"  {key:<44} {row['clips']:>7} {pct(row['accepted_percent']):>8} "
                     f"{pct(row['called_command_percent']):>8}")
    worst = sorted(((w, r) for w, r in words["per_word"].items() if r["accepted"]),
                   key=lambda item: -item[1]["accepted"])[:8]
    if worst:
        lines.append("  most accepted: " + ", ".join(
            f"{w} {r['accepted']}/{r['clips']} (as {', '.join(r['fired_as'])})" for w, r in worst))
    stream = figures["stream"]["overall"]
    lines += [f"commands among other speech ({figures['stream']['hours'] * 60:.1f} min, {stream['spoken']} commands, "
              f"{figures['stream']['other_words']} other words and stretches of speech):",
              *(f"  {line}" for line in stream_table(figures["stream"]).splitlines())]
    return "\n".join(lines)
