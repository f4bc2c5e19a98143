"""Synthetic `_unknown_` words: say words that sound like the commands (and some ordinary words) with the
text-to-speech engines Debian ships, so the model hears many near misses it must not fire on.

    python tools/synth_negatives.py --out runs/synth [--per-word 20] [--seed 0] [--engines espeak,flite,festival]
        [--keywords yes,no,up,down,left,right,stop,go]

Needs `espeak-ng`, `flite`, `festival` (with a voice) and `sox` on the PATH; an engine that is missing or
fails is skipped with a message. Writes `OUT/<engine>/<word>/<voice>_nohash_<n>.wav` (16 kHz mono 16-bit,
at most 1.5 s), the layout `kws.other_speech` reads for `kws train --negatives`: the part before
`_nohash_` is the synthetic speaker (a voice with its own vocal-tract length and pitch), so one voice never
straddles training and validation. Every clip varies rate, pitch, vocal-tract length and level (seeded).
Never writes a keyword or a word that sounds like one (`SOUND_ALIKES`).
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from kws.checkpoint import atomic_write

SAMPLE_RATE = 16000  # the rate every kws model reads (kws.config.FeatureConfig.sample_rate)
MAX_S = 1.5  # longer clips are dropped: a keyword window is 1 s, a little over still fits a word
MARGIN_S = 0.1  # silence kept before and after the word
TRIM_DB = -40.0  # 10 ms frames this far below the loudest frame count as silence

# The commands the shipped model knows; `--keywords` replaces them for a model trained on other words.
DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go")
# Words said exactly like a keyword, or holding it as a whole syllable (up-s, stop-per, car-go): labelling
# them `_unknown_` would teach the model to miss the keyword, so they are never generated.
SOUND_ALIKES = {
    "yes": ("yess", "yes's", "yesterday"),
    "no": ("know", "noh", "knows", "nobody", "nowhere", "noway"),
    "up": ("upp", "ups", "upper", "upright", "uptown", "setup"),
    "down": ("downs", "downtown", "sundown", "countdown"),
    "left": ("lefty", "lefts"),
    "right": ("write", "rite", "wright", "rights", "alright", "upright", "outright"),
    "stop": ("stops", "stopper", "stopped", "nonstop"),
    "go": ("goes", "going", "ago", "cargo", "ergo", "undergo", "lego"),
    "on": ("onto", "upon"),
    "off": ("offer", "offset"),
}
# Why this list: near misses of each command (one sound changed) teach the model where a command ends;
# the Speech Commands extra words, digits and everyday words keep the rest of speech `_unknown_` too.
WORDS = (
    "yet", "yeah", "yell", "yep", "chess", "less", "guess", "mess", "yak",  # yes
    "now", "note", "nope", "nor", "low",  # no
    "cup", "pup", "hop", "op", "top", "cop", "uh", "us",  # up
    "town", "dawn", "done", "don", "drown", "brown", "clown", "gown",  # down
    "lift", "loft", "leaf", "laughed", "lent", "lot",  # left
    "light", "bright", "ride", "rice", "white", "bite",  # right
    "stock", "step", "shop", "spot", "stuff",  # stop
    "goal", "grow", "though", "toe", "so", "gold", "got", "good",  # go
    "on", "off", "of", "dog", "wow", "how",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "happy", "house", "marvin", "sheila", "tree", "follow", "forward", "backward",
    "learn", "visual",
    "apple", "water", "table", "chair", "door", "book", "car", "bus", "red", "blue", "green", "black",
    "small", "big", "fast", "slow", "hot", "cold", "open", "close", "start", "play", "pause", "next",
    "back", "home", "music", "phone", "call", "time", "day", "night", "hello", "thanks", "please",
    "sorry", "maybe", "okay", "again", "turn", "help", "more", "window", "kitchen", "paper", "money",
    "coffee", "baby", "river", "yellow", "lemon", "party",
)

ENGINES = ("espeak", "flite", "festival")
# Clips per word for each engine, as a share of --per-word: espeak has a hundred-odd voices, flite four,
# festival one, so the few voices are not repeated until they dominate.
ENGINE_SHARE = {"espeak": 1.0, "flite": 0.5, "festival": 0.25}
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3",
                   "andy", "annie", "steph", "travis", "linda")
# kal (8 kHz) is kal16 at a lower rate; awb_time only says clock times.
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FLITE_PROFILES = 4  # synthetic speakers per flite voice (vocal-tract length and pitch)
FESTIVAL_PROFILES = 6  # festival has one English voice here, so more profiles of it


class SynthError(Exception):
    """An engine or sox failed; the engine is skipped with this message."""


@dataclass(frozen=True)
class Speaker:
    voice_id: str  # [a-z0-9]: the file-name prefix before `_nohash_`
    voice: str  # the engine's own voice name (espeak: accent+variant)
    formant: float  # vocal-tract length as a formant scale: >1 shorter tract (higher formants)
    pitch_cents: float  # f0 shift from the voice's own


@dataclass(frozen=True)
class Variation:
    rate: float  # speaking rate factor, >1 faster
    formant: float
    pitch_cents: float
    peak_db: float  # peak level in dBFS


# ---- speakers and per-clip variation ----

def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _profile(rng: random.Random, voice_id: str, voice: str) -> Speaker:
    # Formants 12% lower to 14% higher than the voice (a longer or shorter tract), log-uniform; f0 +-250 cents.
    return Speaker(voice_id, voice, math.exp(rng.uniform(math.log(0.88), math.log(1.14))), rng.uniform(-250, 250))


def _variation(rng: random.Random, speaker: Speaker) -> Variation:
    """One clip's draw: the speaker's own tract and pitch, jittered as one person varies between takes."""
    return Variation(rate=rng.uniform(0.75, 1.3), formant=speaker.formant * rng.uniform(0.97, 1.03),
                     pitch_cents=speaker.pitch_cents + rng.uniform(-80, 80), peak_db=rng.uniform(-24, -1))


def _espeak_variants() -> tuple[str, ...]:
    """The ESPEAK_VARIANTS this espeak-ng has: an unknown variant silently falls back to the default."""
    listing = _run(["espeak-ng", "--voices=variant"]).decode(errors="replace").lower()
    have = {line.split("!v/")[1].split()[0] for line in listing.splitlines() if "!v/" in line}
    return tuple(v for v in ESPEAK_VARIANTS if v in have)


def _speakers(engine: str, rng: random.Random) -> list[Speaker]:
    if engine == "espeak":
        voices = [(a, v) for a in ESPEAK_ACCENTS for v in _espeak_variants()]
        return [_profile(rng, "esp" + _alnum(a) + _alnum(v), f"{a}+{v}") for a, v in voices]
    if engine == "flite":
        return [_profile(rng, f"fli{v}p{i}", v) for v in FLITE_VOICES for i in range(FLITE_PROFILES)]
    return [_profile(rng, f"feskalp{i}", "kal_diphone") for i in range(FESTIVAL_PROFILES)]


# ---- engines: word -> WAV at the engine's own rate, speaking rate applied natively ----

def _run(args: list[str], stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SynthError(f"{args[0]}: {error}") from None
    if done.returncode != 0:
        raise SynthError(f"{' '.join(args[:3])} ... failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace').strip()[-300:]}")
    return done.stdout


def _espeak(word: str, speaker: Speaker, v: Variation, path: Path) -> None:
    # 175 words per minute is espeak's default rate.
    _run(["espeak-ng", "-v", speaker.voice, "-s", str(round(175 * v.rate)), "-w", str(path), word])


def _flite(word: str, speaker: Speaker, v: Variation, path: Path) -> None:
    _run(["flite", "-voice", speaker.voice, "--setf", f"duration_stretch={1 / v.rate:.3f}",
          "-t", word, "-o", str(path)])


def _festival_batch(jobs: list[tuple[str, Variation, Path]], workdir: Path) -> None:
    """All festival clips in one process: starting festival costs half a second, a word a few ms."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = ["(voice_kal_diphone)"]
    for word, v, path in jobs:
        lines.append(f"(Parameter.set 'Duration_Stretch {1 / v.rate:.3f})")
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {quoted(word)})) {quoted(str(path))} 'riff)")
    script = workdir / "festival.scm"
    script.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script)])


# ---- post-processing: tract length, pitch, level, trim, 16 kHz ----

def sox_voice(path: Path, v: Variation, rate: float = 1.0) -> np.ndarray:
    """[samples] float32 at SAMPLE_RATE: the recording at `path` as the voice `v`. `speed` scales formants
    and f0 by the factor (and shortens the clip); `pitch` then sets f0 where the variation wants it and
    `tempo` sets the duration to the recording's divided by `rate` (1: an engine set the rate already)."""
    cents = v.pitch_cents - 1200 * math.log2(v.formant)
    effects = ["gain", "-6", "speed", f"{v.formant:.4f}"]  # headroom: tempo and pitch overshoot
    if abs(cents) >= 5:
        effects += ["pitch", f"{cents:.0f}"]
    effects += ["tempo", "-s", f"{rate / v.formant:.4f}", "rate", str(SAMPLE_RATE)]
    raw = _run(["sox", "-V1", str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-", *effects])
    return np.frombuffer(raw, dtype="<f4")


def write_at_peak(audio: np.ndarray, peak_db: float, out_path: Path) -> None:
    """Scale to a peak of `peak_db` dBFS and write a 16-bit WAV atomically. The temporary name ends in .tmp:
    a partly written file never looks like a clip to the loader."""
    audio = audio * (10 ** (peak_db / 20) / float(np.max(np.abs(audio))))
    atomic_write(out_path, lambda tmp: sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV"))


def _trim(audio: np.ndarray) -> np.ndarray:
    """Cut silence beyond MARGIN_S before the first and after the last frame within TRIM_DB of the peak,
    and pad with zeros to MARGIN_S where the engine left less (espeak often starts at the first sample)."""
    hop = SAMPLE_RATE // 100  # 10 ms frames
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)  # [frames, hop]
    if frames.size == 0:
        return audio[:0]
    energy_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)  # [frames]
    loud = np.flatnonzero(energy_db > energy_db.max() + TRIM_DB)
    margin = int(MARGIN_S * SAMPLE_RATE)
    start, stop = loud[0] * hop - margin, (loud[-1] + 1) * hop + margin
    trimmed = audio[max(0, start): stop]
    return np.pad(trimmed, (max(0, -start), max(0, stop - len(audio))))


def _finish(raw_path: Path, v: Variation, out_path: Path) -> str:
    """Raw engine WAV -> varied, trimmed 16 kHz clip written atomically. Returns 'ok', 'silent' or 'long'."""
    audio = _trim(sox_voice(raw_path, v))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-4:
        return "silent"
    if len(audio) > MAX_S * SAMPLE_RATE:
        return "long"
    write_at_peak(audio, v.peak_db, out_path)
    return "ok"


# ---- one engine ----

def _plan(engine: str, words: list[str], per_word: int, seed: int) -> list[tuple[str, Speaker, Variation, int]]:
    """(word, speaker, variation, n) for every clip. Each engine has its own seeded generator, so
    choosing engines does not change another engine's clips."""
    rng = random.Random(f"{seed}-{engine}")
    speakers = _speakers(engine, rng)
    count = max(1, round(per_word * ENGINE_SHARE[engine]))
    plan = []
    for word in words:
        # Distinct speakers for a word until all are used; n counts a speaker's takes of the word.
        chosen = [s for _ in range(math.ceil(count / len(speakers))) for s in rng.sample(speakers, len(speakers))]
        takes: dict[str, int] = {}
        for speaker in chosen[:count]:
            n = takes[speaker.voice_id] = takes.get(speaker.voice_id, -1) + 1
            plan.append((word, speaker, _variation(rng, speaker), n))
    return plan


def _engine_available(engine: str) -> str | None:
    """None if the engine can be used, else why not."""
    program = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}[engine]
    if shutil.which(program) is None:
        return f"{program} is not installed (sudo apt-get install {program})"
    if engine == "festival" and not list(Path("/usr/share/festival/voices").glob("*/kal_diphone")):
        return "festival has no kal_diphone voice (sudo apt-get install festvox-kallpc16k)"
    return None


def _spoken(word: str) -> str:
    """What an engine is asked to say: a keyword like "lights_on" is two words, not "underscore"."""
    return word.replace("_", " ")


def synthesize(engine: str, words: list[str], per_word: int, seed: int, out: Path) -> dict[str, int]:
    """Write one engine's clips under out/<engine>/. Returns counts by outcome; raises SynthError if the
    engine does not work at all."""
    plan = _plan(engine, words, per_word, seed)
    counts = {"ok": 0, "silent": 0, "long": 0, "failed": 0}
    with tempfile.TemporaryDirectory(prefix=f"synth-{engine}-") as tmp:
        raws = [Path(tmp) / f"{i}.wav" for i in range(len(plan))]
        if engine == "festival":
            _festival_batch([(_spoken(word), v, raw) for (word, _, v, _), raw in zip(plan, raws)], Path(tmp))
        for i, ((word, speaker, v, n), raw) in enumerate(zip(plan, raws)):
            try:
                if engine == "espeak":
                    _espeak(_spoken(word), speaker, v, raw)
                elif engine == "flite":
                    _flite(_spoken(word), speaker, v, raw)
                outcome = _finish(raw, v, out / engine / word / f"{speaker.voice_id}_nohash_{n}.wav")
            except SynthError as error:
                if i == 0 or (counts["failed"] > 20 and counts["ok"] == 0):
                    raise  # the engine itself is broken, not this word
                print(f"  {engine} {word!r} {speaker.voice_id}: {error}", file=sys.stderr)
                outcome = "failed"
            counts[outcome] += 1
            raw.unlink(missing_ok=True)
    return counts


def synthesize_with(engines: tuple[str, ...], words: list[str], per_word: int, seed: int,
                    out: Path) -> list[tuple[str, int, float]]:
    """`synthesize` with each engine in turn, one line each; an engine that is missing or broken is skipped
    with its reason. Returns (engine, clips written, seconds) of those that worked."""
    summary = []
    for engine in engines:
        start = time.monotonic()
        why_not = _engine_available(engine)
        if why_not is None:
            try:
                counts = synthesize(engine, words, per_word, seed, out)
            except SynthError as error:
                why_not = str(error)
        if why_not is not None:
            print(f"skipping {engine}: {why_not}", file=sys.stderr)
            continue
        seconds = time.monotonic() - start
        summary.append((engine, counts["ok"], seconds))
        print(f"{engine}: {counts['ok']} clips in {seconds:.0f} s ({counts['long']} over {MAX_S} s, "
              f"{counts['silent']} silent, {counts['failed']} failed; dropped)")
    return summary


# ---- command line ----

def _words(keywords: tuple[str, ...]) -> list[str]:
    """WORDS without the keywords and their sound-alikes (e.g. on/off when those are commands)."""
    banned = set(keywords) | {w for k in keywords for w in SOUND_ALIKES.get(k, ())}
    dropped = [w for w in WORDS if w in banned]
    if dropped:
        print(f"not generating {', '.join(dropped)}: keywords or sound like one")
    return [w for w in dict.fromkeys(WORDS) if w not in banned]


def _keywords(text: str) -> tuple[str, ...]:
    words = tuple(w.strip().lower() for w in text.split(",") if w.strip())
    if not words:
        raise argparse.ArgumentTypeError("give comma-separated words, e.g. yes,no,up")
    return words


def _engines(text: str) -> tuple[str, ...]:
    engines = tuple(e.strip() for e in text.split(",") if e.strip())
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise argparse.ArgumentTypeError(f"engines are {','.join(ENGINES)}; got {text!r}")
    return engines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for <engine>/<word>/*.wav")
    parser.add_argument("--per-word", type=int, default=20,
                        help="clips of each word from espeak; flite makes half as many, festival a quarter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", type=_engines, default=ENGINES, help="comma-separated")
    parser.add_argument("--keywords", type=_keywords, default=DEFAULT_KEYWORDS,
                        help="the model's commands: never generated, nor words that sound like them")
    args = parser.parse_args(argv)
    if args.per_word < 1:
        parser.error("--per-word must be at least 1")
    if shutil.which("sox") is None:
        print("sox is not installed (sudo apt-get install sox)", file=sys.stderr)
        return 2

    words = _words(args.keywords)
    summary = synthesize_with(args.engines, words, args.per_word, args.seed, args.out)
    if not summary:
        print(f"no engine of {', '.join(args.engines)} worked (see above); nothing written", file=sys.stderr)
        return 2
    total = sum(n for _, n, _ in summary)
    print(f"{total} clips of {len(words)} words from {len(summary)} engines in "
          f"{sum(s for *_, s in summary):.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("synth_negatives", main, KwsError))
