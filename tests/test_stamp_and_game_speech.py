"""Which Tux Paint descriptions and Hedgewars phrases become negatives, and how they are written."""

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")  # the tool reads audio with kws.data: a training-side test
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import stamp_and_game_speech  # noqa: E402
from stamp_and_game_speech import game_phrases, stamp_descriptions, stamp_text, write_source  # noqa: E402


def _stamp(folder: Path, name: str, text: str, languages: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    for language in languages:
        suffix = "" if language == "en" else f"_{language}"
        (folder / f"{name}_desc{suffix}.ogg").write_bytes(b"")


def test_a_description_is_read_from_its_language_line_and_english_from_the_first(tmp_path):
    text = tmp_path / "frog.txt"
    text.write_text("A frog.\nes.utf8=Una rana.\nfr.utf8=Une grenouille.\n", encoding="utf-8")
    assert stamp_text(text, "en") == "A frog."
    assert stamp_text(text, "es") == "Una rana."
    assert stamp_text(text, "ro") is None
    assert stamp_text(tmp_path / "missing.txt", "en") is None


def test_descriptions_without_a_known_text_or_with_a_command_like_word_are_left_out(tmp_path):
    animals = tmp_path / "animals"
    _stamp(animals, "frog", "A frog.\nes.utf8=Una rana.\n", ("en", "es", "ro"))  # no Romanian text
    _stamp(animals, "sign", "Do not stop.\nes.utf8=No pares.\nfr.utf8=Un panneau.\n", ("en", "es", "fr"))
    _stamp(tmp_path / "food", "plum", "A plum.\nro.utf8=Nu e o pruna.\n", ("ro",))  # Romanian "no"
    kept = stamp_descriptions(tmp_path)
    assert {language: [p.name for p in paths] for language, paths in kept.items()} == {
        "en": ["frog_desc.ogg"], "es": ["frog_desc_es.ogg"], "fr": ["sign_desc_fr.ogg"]}


def test_game_phrases_named_with_a_command_like_word_are_left_out(tmp_path):
    for voice, names in {"British": ("Excellent", "Yessir", "Enemydown"), "Robot": ("Nooo",)}.items():
        (tmp_path / voice).mkdir()
        for name in names:
            (tmp_path / voice / f"{name}.ogg").write_bytes(b"")
    assert {voice: [p.stem for p in paths] for voice, paths in game_phrases(tmp_path).items()} == {
        "British": ["Excellent"]}


def test_each_voice_is_joined_into_minute_files_and_written_once(tmp_path, monkeypatch):
    monkeypatch.setattr(stamp_and_game_speech, "FILE_SECONDS", 1.0)
    phrases = []
    for index in range(5):  # 0.6 s each: two phrases fill a "minute" of 1 s
        path = tmp_path / f"phrase{index}.wav"
        sf.write(path, np.full(9600, 0.1 * (index + 1), np.float32), 16000)
        phrases.append(path)
    out = tmp_path / "negatives"
    write_source({"es": phrases}, out / "tuxpaint_descriptions")
    files = sorted((out / "tuxpaint_descriptions" / "es").iterdir())
    assert [p.name for p in files] == ["es-000.flac", "es-001.flac", "es-002.flac"]
    lengths = [sf.info(p).frames for p in files]
    assert lengths == [2 * 9600, 2 * 9600, 9600]
    assert sorted(p.name for p in out.iterdir()) == ["tuxpaint_descriptions"]  # no partial folder left
    # A second run leaves a written voice alone.
    files[0].unlink()
    write_source({"es": phrases}, out / "tuxpaint_descriptions")
    assert not files[0].exists()
