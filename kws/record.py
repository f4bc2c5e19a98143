"""`kws record WORD --out DIR`: record your own clips of a word, from the microphone or cut from one long
recording, into a Speech Commands-style folder: DIR/WORD/<speaker>_nohash_<n>.flac, one second each,
16 kHz mono, the word in the middle.

The word is found by energy: the level of each 10 ms frame against the recording's noise floor. A take is
refused, with the reason, when it is empty, too quiet, clipped, longer than the clip or cut off by the
recording's edge. The pure functions (find_sounds, judge_take, split_recording) take numpy arrays, so they
are tested without audio hardware; the I/O (microphone, files, terminal) is thin around them.

Imports no PyTorch: the command works in an install with numpy, soundfile, sounddevice and soxr only.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

import numpy as np

from kws.config import FeatureConfig
from kws.errors import KwsError
from kws.files import fsync, shared_mode

FRAME_MS = 10  # the level is measured over frames this long
DIGITAL_SILENCE_DB = -90.0  # frames below this are exact zeros (a muted or just-opened input), not room noise
FLOOR_PERCENTILE = 20  # the noise floor: this percentile of the other frames' levels
MARGIN_DB = 8.0  # a frame this far above the floor is part of a sound
STANDS_OUT_DB = 12.0  # a sound's loudest frame is at least this far above the floor (else it is noise)
RANGE_DB = 35.0  # a sound's extent: its frames within this of its own loudest (drops long quiet tails)
GAP_MS = 400  # quieter gaps shorter than this stay inside one sound (the closure in "stop")
MIN_SOUND_MS = 50  # shorter bursts are clicks, not words
QUIET_DBFS = -40.0  # a word whose loudest 10 ms stays below this (RMS, dB of full scale) is too quiet
CLIP_LEVEL = 0.99  # samples at or beyond this are at full scale
CLIPPED_MS = 1  # this much audio at full scale inside a word is a clipped take
TRAIL_MS = 600  # a microphone take ends this long after its sound ended
MAX_TAKE_MS = 5000  # ... or after this long in all, heard or not
METER_BAR = 30  # characters of the level meter, for METER_FLOOR_DB..0 dBFS
METER_FLOOR_DB = -60.0
SPEAKER_PATTERN = re.compile(r"[A-Za-z0-9-]{1,40}")
WORD_PATTERN = re.compile(r"[^\W_][\w'-]{0,39}")  # a folder name; a leading _ is the data set's own (_silence_)


@dataclass(frozen=True)
class Sound:
    """One loud stretch of a recording: samples [start, end) and its loudest 10 ms frame (RMS, dBFS)."""

    start: int
    end: int
    peak_db: float


@dataclass(frozen=True, eq=False)
class Take:
    """What became of one take or one stretch of a long recording. `reason` says why it was refused ("" when
    kept); `clip` is the word centred in one clip [clip_samples] float32, empty when refused; `start_s` and
    `end_s` say where the sound lay in the audio given (both 0 when nothing was heard)."""

    reason: str
    clip: np.ndarray = field(repr=False)
    start_s: float
    end_s: float
    peak_db: float

    @property
    def kept(self) -> bool:
        return not self.reason


def frame_levels(audio: np.ndarray, frame: int) -> np.ndarray:
    """RMS level of each whole frame of `audio` [samples], in dB of full scale: [frames]."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def noise_floor(levels: np.ndarray) -> float:
    """The background's level (dBFS): a low percentile of the frames, leaving out digital silence."""
    heard = levels[levels > DIGITAL_SILENCE_DB]
    return float(np.percentile(heard, FLOOR_PERCENTILE)) if len(heard) else DIGITAL_SILENCE_DB


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def find_sounds(audio: np.ndarray, config: FeatureConfig | None = None) -> list[Sound]:
    """Every stretch of `audio` [samples] (16 kHz mono float32) that stands out from its noise floor, in
    order. Loud frames closer than GAP_MS join into one sound; each sound is then trimmed to its frames within
    RANGE_DB of its own loudest."""
    config = config or FeatureConfig()
    frame = config.ms_to_samples(FRAME_MS)
    levels = frame_levels(np.asarray(audio, np.float32), frame)
    if not len(levels):
        return []
    floor = noise_floor(levels)
    merged: list[list[int]] = []
    for start, end in _runs(levels > floor + MARGIN_DB):
        if merged and start - merged[-1][1] < GAP_MS // FRAME_MS:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    sounds = []
    for start, end in merged:
        peak = float(levels[start:end].max())
        if peak < floor + STANDS_OUT_DB or end - start < MIN_SOUND_MS // FRAME_MS:
            continue
        inside = np.flatnonzero(levels[start:end] >= peak - RANGE_DB)
        first, last = start + int(inside[0]), start + int(inside[-1]) + 1
        sounds.append(Sound(first * frame, min(len(audio), last * frame), peak))
    return sounds


def check_sound(audio: np.ndarray, sound: Sound, config: FeatureConfig | None = None) -> str:
    """Why this sound of `audio` [samples] makes no good clip, in words the speaker can act on; "" if it does."""
    config = config or FeatureConfig()
    frame = config.ms_to_samples(FRAME_MS)
    seconds = (sound.end - sound.start) / config.sample_rate
    clip_s = config.clip_ms / 1000
    if sound.end - sound.start > config.clip_samples:
        return (f"too long: the sound lasted {seconds:.1f} s, more than the {clip_s:g} s clip; say the word once, "
                "with quiet before and after it")
    if sound.start < frame or sound.end > len(audio) - frame:
        edge = "start" if sound.start < frame else "end"
        return f"cut off: the sound runs into the {edge} of the recording; leave a moment of quiet around the word"
    at_full_scale = int(np.count_nonzero(np.abs(audio[sound.start:sound.end]) >= CLIP_LEVEL))
    if at_full_scale >= config.ms_to_samples(CLIPPED_MS):
        return ("clipped: the sound reached full scale; speak further from the microphone or turn its input "
                "level down")
    if sound.peak_db < QUIET_DBFS:
        return (f"too quiet: the word peaked at {sound.peak_db:.0f} dBFS, below {QUIET_DBFS:g}; speak louder or "
                "nearer the microphone, or turn its input level up")
    return ""


def cut_clip(audio: np.ndarray, sound: Sound, room: tuple[int, int] | None = None,
             config: FeatureConfig | None = None) -> np.ndarray:
    """One clip [clip_samples] float32 with the sound in its middle. `room`: the samples [lo, hi) of `audio`
    the clip may use (default: all of it; a long recording passes the space between the neighbouring words).
    A clip that would leave the room is moved back inside where the room is long enough, else what lies
    outside it is silence."""
    config = config or FeatureConfig()
    size = config.clip_samples
    lo, hi = room if room is not None else (0, len(audio))
    start = (sound.start + sound.end) // 2 - size // 2
    if hi - lo >= size:
        start = min(max(start, lo), hi - size)
    clip = np.zeros(size, np.float32)
    first, last = max(start, lo), min(start + size, hi)
    if last > first:
        clip[first - start:last - start] = audio[first:last]
    return clip


def _judge(audio: np.ndarray, sound: Sound, room: tuple[int, int] | None, config: FeatureConfig) -> Take:
    rate = config.sample_rate
    reason = check_sound(audio, sound, config)
    clip = np.zeros(0, np.float32) if reason else cut_clip(audio, sound, room, config)
    return Take(reason, clip, sound.start / rate, sound.end / rate, sound.peak_db)


def judge_take(audio: np.ndarray, config: FeatureConfig | None = None) -> Take:
    """A microphone take [samples]: everything heard in it is one word, from the first sound's start to the
    last one's end."""
    config = config or FeatureConfig()
    sounds = find_sounds(audio, config)
    if not sounds:
        floor = noise_floor(frame_levels(np.asarray(audio, np.float32), config.ms_to_samples(FRAME_MS)))
        heard = "only digital silence" if floor <= DIGITAL_SILENCE_DB else f"the background at {floor:.0f} dBFS"
        return Take(f"empty: no word stood out from {heard}; is the microphone on and near you?",
                    np.zeros(0, np.float32), 0.0, 0.0, floor)
    whole = Sound(sounds[0].start, sounds[-1].end, max(s.peak_db for s in sounds))
    return _judge(audio, whole, None, config)


def split_recording(audio: np.ndarray, config: FeatureConfig | None = None) -> list[Take]:
    """A long recording [samples] of the word said many times with pauses: one Take per sound, in order. Each
    clip keeps out of its neighbours' sounds."""
    config = config or FeatureConfig()
    sounds = find_sounds(audio, config)
    bounds = [0] + [s.end for s in sounds[:-1]], [s.start for s in sounds[1:]] + [len(audio)]
    return [_judge(audio, sound, (lo, hi), config) for sound, lo, hi in zip(sounds, *bounds)]


def take_finished(audio: np.ndarray, config: FeatureConfig | None = None) -> bool:
    """Whether a microphone take [samples] so far holds a sound followed by TRAIL_MS of quiet."""
    config = config or FeatureConfig()
    sounds = find_sounds(audio, config)
    return bool(sounds) and len(audio) - sounds[-1].end >= config.ms_to_samples(TRAIL_MS)


# --- where clips go -------------------------------------------------------------------------------------------

def check_word(word: str) -> str:
    if not WORD_PATTERN.fullmatch(word):
        raise KwsError(f"{word!r} cannot be a word folder: use letters, digits, - or ' (up to 40, not starting "
                       "with _ or -), e.g. lights")
    return word


def check_speaker(name: str) -> str:
    if not SPEAKER_PATTERN.fullmatch(name):
        raise KwsError(f"speaker name {name!r}: use 1 to 40 letters, digits or -, e.g. anna or dad-2 (it goes "
                       "before _nohash_ in every file name)")
    return name


def default_speaker() -> str:
    """The login name made safe for a file name (lower case, letters, digits and -), else 'speaker'."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no entry in the password database (a container's bare uid)
        name = ""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "speaker"


def next_number(folder: Path, speaker: str) -> int:
    """One more than the highest n among folder's <speaker>_nohash_<n>.* files (0 when there are none)."""
    pattern = re.compile(rf"{re.escape(speaker)}_nohash_(\d+)\.\w+")
    numbers = [int(m.group(1)) for p in folder.glob(f"{speaker}_nohash_*") if (m := pattern.fullmatch(p.name))]
    return max(numbers, default=-1) + 1


def save_clip(folder: Path, speaker: str, clip: np.ndarray, rate: int) -> Path:
    """Write the clip as folder/<speaker>_nohash_<n>.flac (16-bit) with the next free n, atomically: written
    to a temporary file, flushed, then linked into place. A link never replaces a file, so two sessions saving
    into one folder at once each get their own n."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".take.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, shared_mode())  # mkstemp's 0600 would hide the clips from the other family members
        sf.write(tmp, np.clip(clip, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
        fsync(tmp)
        while True:
            path = folder / f"{speaker}_nohash_{next_number(folder, speaker)}.flac"
            try:
                os.link(tmp, path)
                break
            except FileExistsError:  # another session took that n just now
                continue
            except OSError:  # a file system without hard links (FAT on a USB stick): rename, checked just before
                if path.exists():
                    continue
                os.replace(tmp, path)
                break
        fsync(folder)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- synthetic voices -------------------------------------------------------------------------------------------


def record_synthetic(word: str, folder: Path, count: int, seed: int = 0) -> tuple[list[Path], list[Take]]:
    """Synthetic takes judged and cut as a microphone's are, saved under each voice's speaker name."""
    from kws.synthetic import synthetic_takes

    rate = FeatureConfig().sample_rate
    saved, refused = [], []
    for speaker, audio in synthetic_takes(word, count, seed):
        take = judge_take(audio)
        if take.kept:
            saved.append(save_clip(folder, speaker, take.clip, rate))
        else:
            refused.append(take)
    return saved, refused


# --- the terminal ---------------------------------------------------------------------------------------------

class LevelMeter:
    """The input level as one line on a terminal, redrawn in place: `level [#####.....|.........] -23 dBFS`,
    | marking QUIET_DBFS. Draws nothing when the stream is not a terminal (a log file, a test's pipe)."""

    def __init__(self, stream: TextIO | None = None, redraw: bool | None = None):
        self._stream = stream or sys.stderr
        self._redraw = self._stream.isatty() if redraw is None else redraw
        self._drawn = False

    def show(self, chunk: np.ndarray) -> None:
        if not self._redraw or not len(chunk):
            return
        self._stream.write(f"\r{meter_line(chunk)}\x1b[K")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the line, so that a message printed next takes its place."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False


def meter_line(chunk: np.ndarray) -> str:
    """One chunk's level as a bar: its loudest 10 ms (RMS, dBFS) from METER_FLOOR_DB to 0, CLIPPED beyond
    CLIP_LEVEL."""
    levels = frame_levels(chunk, FeatureConfig().ms_to_samples(FRAME_MS))
    level = float(levels.max()) if len(levels) else frame_levels(chunk, len(chunk))[0]
    filled = round(METER_BAR * np.clip(1 - level / METER_FLOOR_DB, 0, 1))
    mark = round(METER_BAR * (1 - QUIET_DBFS / METER_FLOOR_DB))
    cells = ["#" if i < filled else "." for i in range(METER_BAR)]
    cells[mark] = "|"
    clipped = "  CLIPPED" if np.abs(chunk).max() >= CLIP_LEVEL else ""
    return f"level [{''.join(cells)}] {max(level, -99):4.0f} dBFS{clipped}"


def _say(stream: TextIO, meter: LevelMeter, text: str) -> None:
    meter.clear()
    print(text, file=stream, flush=True)


# --- the two ways in ------------------------------------------------------------------------------------------

def next_take(chunks: Iterator[np.ndarray], on_chunk: Callable[[np.ndarray], None],
              config: FeatureConfig | None = None) -> np.ndarray:
    """Audio [samples] from `chunks` until a sound has been followed by TRAIL_MS of quiet, or MAX_TAKE_MS
    has passed. Raises KwsError when the source ends first."""
    config = config or FeatureConfig()
    parts, samples = [], 0
    for chunk in chunks:
        parts.append(chunk)
        samples += len(chunk)
        on_chunk(chunk)
        audio = np.concatenate(parts)
        if samples >= config.ms_to_samples(MAX_TAKE_MS) or take_finished(audio, config):
            return audio
    raise KwsError("the audio input ended before the take did")


def record_session(chunks: Iterator[np.ndarray], word: str, count: int, save: Callable[[np.ndarray], Path],
                   err: TextIO | None = None, out: TextIO | None = None, meter: LevelMeter | None = None,
                   config: FeatureConfig | None = None) -> list[Path]:
    """Prompt for `count` good takes of `word` from `chunks` (16 kHz float32 [samples] each, e.g. a
    Microphone's), asking again after each refused one. Prompts, refusals and the meter go to `err`, each
    saved file's path to `out`. Returns the saved paths."""
    err, out = err or sys.stderr, out or sys.stdout
    meter = meter or LevelMeter(err)
    saved: list[Path] = []
    try:
        while len(saved) < count:
            _say(err, meter, f"say '{word}' ({len(saved) + 1} of {count})")
            take = judge_take(next_take(chunks, meter.show, config), config)
            if not take.kept:
                _say(err, meter, f"  refused, {take.reason}")
                continue
            path = save(take.clip)
            saved.append(path)
            meter.clear()
            print(f"saved {path} (sound {take.end_s - take.start_s:.2f} s, peak {take.peak_db:.0f} dBFS)",
                  file=out, flush=True)
    finally:
        meter.clear()
    return saved


def record_microphone(word: str, folder: Path, speaker: str, count: int, device: int | str | None) -> list[Path]:
    """Takes from the microphone (edge.sources.Microphone: the same device choice and errors as
    edge.listen) into folder (DIR/WORD)."""
    from edge.cli import printable
    from edge.sources import Microphone

    config = FeatureConfig()
    with Microphone(config.sample_rate, device, instead="--from-wav FILE") as microphone:
        print(f"recording from {printable(microphone.device_name)} ({microphone.device_rate} Hz) into {folder} as "
              f"{speaker}; Ctrl+C stops, clips saved so far stay", file=sys.stderr, flush=True)
        return record_session(microphone.chunks(), word, count,
                              lambda clip: save_clip(folder, speaker, clip, config.sample_rate), config=config)


def record_file(path: Path, folder: Path, speaker: str) -> tuple[list[Path], list[Take]]:
    """Cut a long recording (any rate, mono or stereo) into clips in folder; returns (saved paths, refused
    stretches). Each stretch is reported as it is judged."""
    from edge.sources import file_chunks

    config = FeatureConfig()
    audio = np.concatenate(list(file_chunks(path, config.sample_rate, config.sample_rate)))
    takes = split_recording(audio, config)
    if not takes:
        raise KwsError(f"no word found in {path}: nothing stands out from its background noise; is it the right "
                       "file, and is the word loud enough?")
    saved, refused = [], []
    for take in takes:
        where = f"{take.start_s:7.2f}-{take.end_s:.2f} s"
        if take.kept:
            saved.append(save_clip(folder, speaker, take.clip, config.sample_rate))
            print(f"{where}: saved {saved[-1]}", flush=True)
        else:
            refused.append(take)
            print(f"{where}: refused, {take.reason}", file=sys.stderr, flush=True)
    return saved, refused


# --- the command ----------------------------------------------------------------------------------------------

COUNT = 20  # takes asked for by default


def run(args) -> int:
    """`kws record` with its parsed arguments (see kws.cli)."""
    try:
        return _run(args)
    except ModuleNotFoundError as error:
        if error.name not in ("sounddevice", "soxr", "soundfile"):
            raise
        raise KwsError(f"{error.name} is not installed; install the edge extra: pip install '.[edge]'") from None


def _run(args) -> int:
    if args.list_devices:
        from edge.sources import list_devices

        print(list_devices())
        return 0
    if args.word is None or args.out is None:
        raise KwsError("kws record needs a WORD and --out DIR, e.g. kws record lights --out my_words")
    word, speaker = check_word(args.word), check_speaker(args.speaker or default_speaker())
    folder = args.out / word
    if args.synthetic is not None:
        given = [flag for flag, value in (("--from-wav", args.from_wav), ("--device", args.device),
                                          ("--count", args.count), ("--speaker", args.speaker)) if value is not None]
        if given:
            raise KwsError(f"--synthetic makes its takes with espeak-ng voices, each its own speaker: leave out "
                           f"{', '.join(given)}")
        if args.synthetic < 1:
            raise KwsError(f"--synthetic must be at least 1, not {args.synthetic}")
        saved, refused = record_synthetic(word, folder, args.synthetic)
        print(f"{len(saved)} synthetic clip(s) of '{word}' saved in {folder}, {len(refused)} refused"
              + (f" ({refused[0].reason})" if refused else ""))
        if not saved:
            raise KwsError(f"no synthetic clip of '{word}' was kept")
        return 0
    if args.from_wav is not None:
        if args.device is not None:
            raise KwsError("--device chooses a microphone; --from-wav reads no microphone: leave out one of the two")
        if args.count is not None:
            raise KwsError("--count is the number of takes from the microphone; --from-wav cuts every word in "
                           "the file: leave out --count")
        saved, refused = record_file(args.from_wav, folder, speaker)
        print(f"{len(saved)} clip(s) of '{word}' saved in {folder}, {len(refused)} stretch(es) refused")
        if not saved:
            raise KwsError(f"no clip saved from {args.from_wav}: every stretch was refused (reasons above)")
        return 0
    count = COUNT if args.count is None else args.count
    if count < 1:
        raise KwsError(f"--count must be at least 1, not {count}")
    saved = record_microphone(word, folder, speaker, count, args.device)
    print(f"{len(saved)} clip(s) of '{word}' saved in {folder}")
    return 0
