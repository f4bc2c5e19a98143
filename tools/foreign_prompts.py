"""More real speech to train "not a command" on: Asterisk's French, Italian and Russian phone prompts; and a
fourth voice to measure on.

    sudo apt-get install ffmpeg asterisk-core-sounds-{fr,it,ru}-g722 asterisk-core-sounds-{fr,it,ru}
    python tools/foreign_prompts.py --out runs/negatives
    kws train ... --negatives runs/negatives

Each package holds about 25 minutes of studio prompts by one speaker (fr_CA June, it_IT Carlo, ru_RU
IvrvoiceRU; CC BY-SA 3.0, Digium) in G.722, a 16 kHz codec, with a transcript of each. Other languages
are speech the commands never sound like, from speakers no measurement uses: the Spanish prompts are left
out because their speaker (Allison) also reads the English prompts that `kws eval-open-set` tests on. A
prompt whose transcript holds a word that sounds like a command ("no", "non", "stop", ...) or is a tone
("[beep]") is left out.

`--out` gets a copy of `--other` (links, nothing copied) plus `asterisk_prompts/training/<speaker>/*.flac`:
the new source is training data only, and `kws.other_speech` weights it as one more source. Do not commit
the audio.

`--held-out` instead writes a fourth voice, for measuring only, as flat FLAC files for
`kws eval-open-set --split validation --negatives OUT`: 19 minutes of another Italian speaker
(Menardi; CC BY-SA 3.0 IT, Marco Menardi and Paola Dal Zot), recorded at 8 kHz in GSM:

    sudo apt-get install ffmpeg asterisk-prompt-it-menardi-gsm asterisk-core-sounds-it
    python tools/foreign_prompts.py --held-out --out runs/prompts_validation

Its prompts carry the names of the core Italian set, whose transcript filters them (the wording of a few
may differ). Debian's French (Armelle) and Colombian Spanish voices would add two more speakers, but their
packages conflict with the core transcripts that the filter needs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from asterisk_negatives import require, transcript_file, transcripts, without_commands  # tools/ is on the path of a script run from it

SOUNDS = Path("/usr/share/asterisk/sounds")


class Voice(NamedTuple):
    language: str  # also names the package of the transcript that filters its prompts
    folder: str  # under SOUNDS
    package: str  # the Debian package of its audio
    codec: str  # the audio files' suffix and ffmpeg's name for their format


VOICES = {language: Voice(language, folder, f"asterisk-core-sounds-{language}-g722", "g722")
          for language, folder in (("fr", "fr_CA_f_June"), ("it", "it_IT_m_Carlo"), ("ru", "ru_RU_f_IvrvoiceRU"))}
HELD_OUT = Voice("it", "it_IT_f_Menardi", "asterisk-prompt-it-menardi-gsm", "gsm")
SOUNDS_LIKE_COMMANDS = ("yes", "no", "non", "up", "down", "left", "right", "on", "off", "stop", "go", "стоп")
SOURCE = "asterisk_prompts"


def speech_only(prompts: dict[str, str]) -> dict[str, str]:
    """The prompts that are speech (not "[beep]") and hold no word like a command."""
    return {name: text for name, text in without_commands(prompts, SOUNDS_LIKE_COMMANDS).items()
            if text and "[" not in text}


def decode(source: Path, target: Path, codec: str = "g722") -> None:
    """A raw G.722 or GSM prompt -> 16 kHz FLAC, written under a temporary name first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".flac", dir=target.parent, delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", codec, "-i", str(source), "-ar", "16000",
                        "-ac", "1", str(partial)], check=True)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def write_prompts(prompts: dict[str, str], voice: Path, codec: str, target: Path) -> int:
    """Decode each prompt of `voice` that `speech_only` keeps into `target`, one FLAC per prompt ("digits/1"
    becomes digits-1.flac); returns how many `target` holds."""
    kept = speech_only(prompts)
    written = 0
    for name in sorted(kept):
        audio = voice / f"{name}.{codec}"
        flac = target / f"{name.replace('/', '-')}.flac"
        if audio.is_file():
            if not flac.is_file():
                decode(audio, flac, codec)
            written += 1
    print(f"{voice.name}: {written} prompts in {target}; left out {len(prompts) - len(kept)} "
          "that hold a word like a command or a tone")
    return written


def require_voice(voice: Voice) -> None:
    require({SOUNDS / voice.folder: voice.package,
             transcript_file(voice.language): f"asterisk-core-sounds-{voice.language}"})


def write_voice(voice: Voice, target: Path) -> int:
    return write_prompts(transcripts(transcript_file(voice.language)), SOUNDS / voice.folder, voice.codec, target)


def link_sources(other: Path, out: Path) -> None:
    """Link each source folder of `other` into `out` (created), so that `out` is a negatives folder that
    holds them and what a tool adds beside them; nothing is copied."""
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in other.iterdir() if p.is_dir()):
        link = out / source.name
        if not link.exists():
            link.symlink_to(os.path.relpath(source.resolve(), out.resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of negatives to build (created)")
    parser.add_argument("--other", type=Path, default=Path("../shared/data/other_speech"),
                        help="the other-speech folder to link in beside the prompts (default: %(default)s)")
    parser.add_argument("--languages", default=",".join(VOICES), help="(default: %(default)s)")
    parser.add_argument("--held-out", action="store_true",
                        help="write the voice for measuring only, instead of the training voices")
    args = parser.parse_args()
    if args.held_out:
        require_voice(HELD_OUT)
        write_voice(HELD_OUT, args.out)
        return
    languages = args.languages.split(",")
    if unknown := sorted(set(languages) - set(VOICES)):
        parser.error(f"--languages: no voice for {', '.join(unknown)}; choose from {', '.join(VOICES)}")
    # Every package is checked before any work, so a missing one stops the run before anything is decoded.
    for language in languages:
        require_voice(VOICES[language])
    link_sources(args.other, args.out)
    for language in languages:
        write_voice(VOICES[language], args.out / SOURCE / "training" / VOICES[language].folder)


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("foreign_prompts", main, KwsError))
