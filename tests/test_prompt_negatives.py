"""Which Asterisk prompts become negatives: none that says a command, none that is only a tone."""

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from asterisk_negatives import require, transcripts, without_commands  # noqa: E402
import foreign_prompts  # noqa: E402
from foreign_prompts import speech_only  # noqa: E402
from kws.errors import KwsError  # noqa: E402


def test_transcripts_read_the_first_line_behind_a_byte_order_mark(tmp_path):
    listing = tmp_path / "core-sounds-fr.txt.gz"
    with gzip.open(listing, "wt", encoding="utf-8") as f:
        f.write("\ufeffagent-pass: Mot de passe.\n; a comment: not a prompt\ndigits/1: un\n")
    assert transcripts(listing) == {"agent-pass": "Mot de passe.", "digits/1": "un"}


def test_commands_are_matched_as_whole_words_in_any_case():
    prompts = {"a": "Press Stop now.", "b": "Goodbye.", "c": "Unknown extension.", "d": "Say yes."}
    assert without_commands(prompts, ("stop", "go", "no", "yes")) == {"b": "Goodbye.", "c": "Unknown extension."}


def test_foreign_prompts_keep_speech_without_command_like_words():
    prompts = {"ok": "Veuillez patienter.", "non": "Non, merci.", "stop": "Стоп.", "tone": "[beep]", "empty": "",
               "ru": "Пожалуйста, подождите."}
    assert speech_only(prompts) == {"ok": "Veuillez patienter.", "ru": "Пожалуйста, подождите."}


def test_a_missing_package_is_named(tmp_path):
    with pytest.raises(KwsError, match="install Debian's asterisk-core-sounds-fr first"):
        require({tmp_path: "asterisk-core-sounds-fr-g722",
                 tmp_path / "core-sounds-fr.txt.gz": "asterisk-core-sounds-fr"})


def test_only_kept_prompts_with_audio_are_decoded_flat(tmp_path, monkeypatch):
    voice = tmp_path / "it_IT_f_Menardi"
    (voice / "digits").mkdir(parents=True)
    for name in ("wait", "digits/1", "stop", "tone"):
        (voice / f"{name}.gsm").write_bytes(b"gsm")
    decoded = []
    monkeypatch.setattr(foreign_prompts, "decode",
                        lambda source, target, codec: (decoded.append((source.name, codec)), target.write_bytes(b"flac")))
    prompts = {"wait": "Attendere.", "digits/1": "uno", "stop": "Stop.", "tone": "[beep]", "no-audio": "Ciao."}
    target = tmp_path / "out"
    target.mkdir()
    assert foreign_prompts.write_prompts(prompts, voice, "gsm", target) == 2
    assert sorted(p.name for p in target.iterdir()) == ["digits-1.flac", "wait.flac"]
    assert sorted(decoded) == [("1.gsm", "gsm"), ("wait.gsm", "gsm")]
    # a second run decodes nothing again
    decoded.clear()
    assert foreign_prompts.write_prompts(prompts, voice, "gsm", target) == 2
    assert decoded == []


def test_the_other_sources_are_linked_not_copied(tmp_path):
    other = tmp_path / "other_speech"
    (other / "librispeech" / "training").mkdir(parents=True)
    (other / "README.md").write_text("not a source")
    out = tmp_path / "negatives"
    foreign_prompts.link_sources(other, out)
    foreign_prompts.link_sources(other, out)  # a second run keeps the link
    assert [p.name for p in out.iterdir()] == ["librispeech"]
    assert (out / "librispeech").is_symlink() and (out / "librispeech" / "training").is_dir()
