"""Real speech without the commands for measuring false alarms: Asterisk's English phone prompts.

    sudo apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en
    python tools/asterisk_negatives.py --out runs/asterisk
    kws eval-open-set --model models/kws.onnx --data ... --other ... --negatives runs/asterisk

Debian's `asterisk-core-sounds-en-wav` holds about 25 minutes of studio prompts by one speaker (8 kHz,
CC BY-SA 3.0, Digium/Allison Smith) with a transcript of each. This links every prompt whose transcript
holds none of the commands into one folder ("No more messages." and "left bracket" are left out), so
`kws eval-open-set --negatives` counts every event there as a false alarm. Nothing is copied; use the
audio for measuring only, do not commit it.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import re
from pathlib import Path

from kws.errors import KwsError

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")


def transcript_file(language: str) -> Path:
    """Where Debian's asterisk-core-sounds-<language> keeps what each prompt says."""
    return Path(f"/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz")


TRANSCRIPT = transcript_file("en")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def transcripts(path: Path = TRANSCRIPT) -> dict[str, str]:
    """prompt name (e.g. 'digits/0') -> what is said."""
    prompts = {}
    for line in gzip.open(path, "rt", encoding="utf-8", errors="replace"):
        name, colon, text = line.lstrip("\ufeff").partition(":")
        if colon and not line.startswith(";"):
            prompts[name.strip()] = text.strip()
    return prompts


def require(packages: dict[Path, str]) -> None:
    """Refuse to go on, naming the Debian package to install, where a file it brings is missing.

    The audio and the transcripts come in two packages, the second only recommended by the first.
    """
    for needed, package in packages.items():
        if not needed.exists():
            raise KwsError(f"{needed} is missing: install Debian's {package} first")


@functools.cache
def _spoken(commands: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(map(re.escape, commands)) + r")\b", re.IGNORECASE)


def holds_command(text: str, commands: tuple[str, ...]) -> bool:
    """Whether `text` holds one of `commands` as a whole word, in any case."""
    return bool(_spoken(commands).search(text))


def without_commands(prompts: dict[str, str], commands: tuple[str, ...]) -> dict[str, str]:
    return {name: text for name, text in prompts.items() if not holds_command(text, commands)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the links (created)")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help="words a prompt must not hold (default: %(default)s)")
    args = parser.parse_args()
    require({SOUNDS: "asterisk-core-sounds-en-wav", TRANSCRIPT: "asterisk-core-sounds-en"})
    prompts = transcripts()
    kept = without_commands(prompts, tuple(w.strip() for w in args.commands.split(",") if w.strip()))
    args.out.mkdir(parents=True, exist_ok=True)
    linked = 0
    for name in sorted(kept):
        source = SOUNDS / f"{name}.wav"
        if source.is_file():
            link = args.out / f"{name.replace('/', '-')}.wav"
            link.unlink(missing_ok=True)
            link.symlink_to(source)
            linked += 1
    print(f"linked {linked} prompts into {args.out}; left out {len(prompts) - len(kept)} whose transcript holds "
          f"a command, and {len(kept) - linked} listed without a file")


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("asterisk_negatives", main, KwsError))
