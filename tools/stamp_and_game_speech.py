"""More held-out real speech to measure false alarms on, from two Debian packages of voice recordings:

- Tux Paint's spoken stamp descriptions (`tuxpaint-stamps-default`; GPL-2): about 4,700 short phrases
  ("A frog.", "Una rana.") in 12 languages, each language read by its own volunteer (the package's
  changelog names them), 44.1 kHz, about 3 hours;
- Hedgewars' character voices (`hedgewars-data`; GFDL-1.3, as Debian's copyright file gives for its
  sounds): 15 voices, about 840 short game phrases ("Excellent!", "Take cover!"), most in English, about
  14 minutes.

    sudo apt-get install --no-install-recommends tuxpaint-stamps-default hedgewars-data
    python tools/stamp_and_game_speech.py --out eval/other
    kws eval-open-set --model models/kws.onnx --data ... --other eval/other [--split testing]

A Tux Paint phrase is kept only where the stamp's text file gives what it says in that language and that
holds no word like a command (the same list as `foreign_prompts.py`, plus Romanian "nu"). A Hedgewars
phrase is kept unless its name says a command-like word ("Yessir", "Nooo", "Enemydown", ...).

The phrases of each reader or voice are joined end to end, in files of about a minute at 16 kHz, so that
`kws.other_speech` cuts them into overlapping windows as it does sentences (one phrase alone is shorter
than a window, and a window across two phrases is speech that fires as often). They land in
`--out/tuxpaint_descriptions/<language>/` and `--out/hedgewars_voices/<voice>/`, beside links to the
sources of `--other`. A language or a voice is one speaker, which `kws.other_speech` splits with the data
set's hash: Catalan, Romanian and the voices Default_ru, Pirate and Surfer are validation (46 minutes),
Greek, English and the voices Default_uk and Mobster testing (20 minutes), and `kws eval-open-set` counts
false alarms on them as on LibriSpeech. Passed to `kws train --negatives`, the training speakers become
two more sources of `_unknown_`: measured on two seeds and not adopted (see the model card). Do not
commit the audio."""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kws, for a script run from anywhere

from asterisk_negatives import holds_command, require  # noqa: E402  (tools/ is on the path of a script run from it)
from foreign_prompts import SOUNDS_LIKE_COMMANDS, link_sources  # noqa: E402
from kws.data import load_audio  # noqa: E402

STAMPS = Path("usr/share/tuxpaint/stamps")
VOICES = Path("usr/share/games/hedgewars/Data/Sounds/voices")
COMMAND_LIKE = SOUNDS_LIKE_COMMANDS + ("nu",)  # Romanian "no"
# Hedgewars phrases whose name holds a word like a command: "yes sir", "no", "enemy down", "gonna", "come on".
GAME_PHRASES_LEFT_OUT = {"yessir", "nooo", "enemydown", "gonnagetyou", "comeonthen"}
SAMPLE_RATE = 16000
FILE_SECONDS = 60.0
_DESCRIPTION = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<language>[A-Za-z_@]+))?\.ogg$")


@functools.cache  # one text file serves the stamp's recordings in every language
def _lines(text_file: Path) -> tuple[str, ...]:
    if not text_file.is_file():
        return ()
    return tuple(text_file.read_text(encoding="utf-8", errors="replace").splitlines())


def stamp_text(text_file: Path, language: str) -> str | None:
    """What a stamp's description says in `language` ("en": the file's first line); None if not given."""
    lines = _lines(text_file)
    if language == "en":
        return lines[0].strip() if lines else None
    prefix = f"{language}.utf8="
    return next((line[len(prefix):].strip() for line in lines if line.startswith(prefix)), None)


def stamp_descriptions(stamps: Path) -> dict[str, list[Path]]:
    """language -> the description recordings whose text is known and holds no command-like word."""
    kept: dict[str, list[Path]] = defaultdict(list)
    for audio in sorted(stamps.rglob("*_desc*.ogg")):
        match = _DESCRIPTION.match(audio.name)
        if not match:
            continue
        language = match["language"] or "en"
        text = stamp_text(audio.with_name(f"{match['stamp']}.txt"), language)
        if text and not holds_command(text, COMMAND_LIKE):
            kept[language].append(audio)
    return dict(kept)


def game_phrases(voices: Path) -> dict[str, list[Path]]:
    """voice -> its phrase recordings, less those named with a command-like word."""
    kept = {}
    for voice in sorted(p for p in voices.iterdir() if p.is_dir()):
        phrases = [p for p in sorted(voice.glob("*.ogg")) if p.stem.lower() not in GAME_PHRASES_LEFT_OUT]
        if phrases:
            kept[voice.name] = phrases
    return kept


def write_joined(recordings: list[Path], target: Path, name: str) -> int:
    """Join `recordings` end to end at 16 kHz into `target/<name>-NNN.flac`, files of about FILE_SECONDS.
    They are written into a hidden folder at the top of the negatives folder, which is then renamed: an
    interrupted run leaves no half-written voice. Returns the number of files."""
    chunks: list[list[np.ndarray]] = [[]]
    length = 0
    for path in recordings:
        if length >= FILE_SECONDS * SAMPLE_RATE:
            chunks.append([])
            length = 0
        audio = load_audio(path, SAMPLE_RATE)
        chunks[-1].append(audio)
        length += len(audio)
    target.parent.mkdir(parents=True, exist_ok=True)
    # `kws.other_speech` skips top folders that start with a dot, so the partial voice is never read.
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=target.parents[1]))
    try:
        for index, chunk in enumerate(chunks):
            sf.write(partial / f"{name}-{index:03d}.flac", np.concatenate(chunk), SAMPLE_RATE)
        partial.replace(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return len(chunks)


def write_source(speakers: dict[str, list[Path]], source: Path) -> None:
    for speaker, recordings in speakers.items():
        target = source / speaker
        if target.is_dir():
            print(f"{target}: already written")
            continue
        files = write_joined(recordings, target, speaker)
        print(f"{target}: {len(recordings)} phrases in {files} files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of negatives to add the two sources to")
    parser.add_argument("--other", type=Path, default=Path("../shared/data/other_speech"),
                        help="the other-speech folder to link in beside the two sources (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="where the packages' files are (default: %(default)s; or a folder that "
                             "`dpkg-deb -x` unpacked them into, without installing them)")
    args = parser.parse_args()
    stamps, voices = args.root / STAMPS, args.root / VOICES
    require({stamps: "tuxpaint-stamps-default", voices: "hedgewars-data"})
    link_sources(args.other, args.out)
    write_source(stamp_descriptions(stamps), args.out / "tuxpaint_descriptions")
    write_source(game_phrases(voices), args.out / "hedgewars_voices")


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("stamp_and_game_speech", main, KwsError))
