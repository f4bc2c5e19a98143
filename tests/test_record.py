"""`kws record`: finding a word by energy, trimming it into a clip and refusing bad takes (pure functions on
numpy arrays); cutting a long recording with --from-wav; the microphone path through a real PulseAudio
virtual microphone. None of it needs PyTorch, so these tests also run in the edge-only install (kws.record is
imported with importlib: conftest leaves out files that import kws at their top, as training-side tests)."""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import read_line

record = importlib.import_module("kws.record")
cli = importlib.import_module("kws.cli")
synthetic = importlib.import_module("kws.synthetic")

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "clips"
RATE = 16000
sys.path.insert(0, str(ROOT / "tools"))
import virtual_mic  # noqa: E402


def clip(word: str) -> np.ndarray:
    (path,) = CLIPS.glob(f"{word}_*.flac")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return audio


def burst(seconds: float, amplitude: float = 0.3, hz: float = 440.0) -> np.ndarray:
    """A tone with soft edges, like a word's loudness rising and falling."""
    n = int(seconds * RATE)
    envelope = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * RATE))
    return (amplitude * envelope * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype(np.float32)


def place(parts: list[np.ndarray | float], noise: float = 0.001, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Audio from sounds and pauses (a float: seconds of quiet), over light noise; returns it and where each
    sound starts."""
    pieces, starts, at = [], [], 0
    for part in parts:
        piece = np.zeros(int(part * RATE), np.float32) if isinstance(part, float) else part
        if not isinstance(part, float):
            starts.append(at)
        pieces.append(piece)
        at += len(piece)
    audio = np.concatenate(pieces)
    return audio + np.random.default_rng(seed).normal(0, noise, len(audio)).astype(np.float32), starts


def best_match(saved: np.ndarray, source: np.ndarray) -> float:
    """The highest normalised correlation of the source clip with the saved one over all shifts (by FFT)."""
    a = np.concatenate([np.zeros(len(source)), saved.astype(np.float64), np.zeros(len(source))])
    size = 1 << (len(a) + len(source)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(source.astype(np.float64), size)), size)
    corr = corr[:len(a) - len(source) + 1]
    energy = np.concatenate([[0.0], np.cumsum(a ** 2)])
    windows = np.sqrt(np.maximum(energy[len(source):] - energy[:-len(source)], 0.0))
    return float(np.max(corr / (windows * np.linalg.norm(source) + 1e-9)))


# --- the pure functions -------------------------------------------------------------------------------------

def test_a_word_in_noise_is_found_and_centred_in_one_clip():
    word = burst(0.4)
    audio, (start,) = place([1.3, word, 1.3])
    take = record.judge_take(audio)
    assert take.kept, take.reason
    assert take.clip.shape == (RATE,) and take.clip.dtype == np.float32
    assert take.start_s == pytest.approx(start / RATE, abs=0.02)
    assert take.end_s == pytest.approx((start + len(word)) / RATE, abs=0.02)
    loud = np.flatnonzero(np.abs(take.clip) > 0.1)
    assert (loud[0] + loud[-1]) / 2 == pytest.approx(RATE / 2, abs=0.01 * RATE)  # centred within 10 ms


def test_a_real_word_is_kept_whole():
    source = clip("left")
    audio, _ = place([0.8, source, 0.8], noise=0.003)
    take = record.judge_take(audio)
    assert take.kept, take.reason
    assert best_match(take.clip, source) > 0.99  # the whole word, nothing of it cut


def test_a_word_near_the_start_of_a_take_is_moved_not_padded():
    audio, _ = place([0.2, burst(0.5), 0.7])
    take = record.judge_take(audio)
    assert take.kept, take.reason
    assert np.all(take.clip[:100] != 0)  # the clip is taken from the recording, not padded with zeros


@pytest.mark.parametrize("name, parts, reason", [
    ("too quiet", [1.0, burst(0.5, amplitude=0.004), 1.0], "too quiet"),
    ("clipped", [1.0, np.clip(burst(0.5, amplitude=3.0), -1, 1), 1.0], "clipped"),
    ("too long", [1.0, burst(1.4), 1.0], "too long"),
    ("cut off", [1.5, burst(0.6)], "cut off"),
    ("noise only", [3.0], "empty"),
])
def test_bad_takes_are_refused_with_the_reason(name, parts, reason):
    audio, _ = place(parts, noise=0.0001)
    take = record.judge_take(audio)
    assert not take.kept and take.clip.size == 0
    assert take.reason.startswith(reason), take.reason


def test_digital_silence_is_empty():
    take = record.judge_take(np.zeros(2 * RATE, np.float32))
    assert take.reason.startswith("empty") and "digital silence" in take.reason
    assert record.judge_take(np.zeros(0, np.float32)).reason.startswith("empty")


def test_a_quiet_word_passes_where_the_same_word_louder_would_clip():
    """The refusals have limits between them: a word at -20 dBFS is neither too quiet nor clipped."""
    take = record.judge_take(place([1.0, burst(0.5, amplitude=0.14), 1.0])[0])
    assert take.kept, take.reason


def test_digital_silence_before_the_room_noise_does_not_lower_the_floor():
    """A microphone that has just opened delivers exact zeros first; the noise after them is the background,
    not a sound."""
    noisy, _ = place([1.5, clip("yes"), 1.0], noise=0.01)
    audio = np.concatenate([np.zeros(RATE, np.float32), noisy])
    take = record.judge_take(audio)
    assert take.kept, take.reason
    assert take.end_s - take.start_s < 0.6


def test_take_finished_waits_for_quiet_after_the_sound():
    before, _ = place([1.0, burst(0.5), 0.2])
    after, _ = place([1.0, burst(0.5), 0.7])
    assert not record.take_finished(before)
    assert record.take_finished(after)
    assert not record.take_finished(place([2.0])[0])


def test_split_recording_keeps_each_clip_out_of_its_neighbours():
    audio, starts = place([0.5, burst(0.4, hz=300), 0.5, burst(0.4, hz=900), 0.5])
    takes = record.split_recording(audio)
    assert [t.kept for t in takes] == [True, True]
    assert all(t.clip.shape == (RATE,) for t in takes)
    for take, hz in zip(takes, (300, 900)):
        spectrum = np.abs(np.fft.rfft(take.clip))
        assert np.argmax(spectrum) == pytest.approx(hz, abs=2)  # 1 Hz bins over one second
        other = 900 if hz == 300 else 300
        assert spectrum[other] < 0.01 * spectrum[hz]  # nothing of the neighbour


def test_level_meter_draws_in_place_only_on_a_terminal():
    loud, quiet = burst(0.1, amplitude=0.5), np.full(1600, 1e-4, np.float32)
    assert "CLIPPED" in record.meter_line(np.ones(1600, np.float32))
    assert record.meter_line(loud).count("#") > record.meter_line(quiet).count("#")
    assert "CLIPPED" not in record.meter_line(loud)
    pipe = io.StringIO()  # not a terminal
    record.LevelMeter(pipe).show(loud)
    assert pipe.getvalue() == ""
    terminal = io.StringIO()
    meter = record.LevelMeter(terminal, redraw=True)
    meter.show(loud)
    meter.show(quiet)
    meter.clear()
    drawn = terminal.getvalue()
    assert drawn.count("\r") == 3 and "\n" not in drawn and drawn.endswith("\r\x1b[K")


def test_a_session_asks_again_after_a_refused_take():
    """record_session fed chunks as a microphone gives them: a quiet take, then two good ones."""
    stream, _ = place([1.0, burst(0.5, amplitude=0.004), 1.0, burst(0.5), 1.0, burst(0.5), 1.0], noise=0.0001)
    chunks = (stream[i:i + 800] for i in range(0, len(stream), 800))
    kept, err, out = [], io.StringIO(), io.StringIO()

    def save(audio):
        kept.append(audio)
        return Path(f"clip{len(kept)}.flac")

    saved = record.record_session(chunks, "lights", 2, save, err, out)
    assert saved == [Path("clip1.flac"), Path("clip2.flac")]
    assert all(c.shape == (RATE,) for c in kept)
    prompts = [line for line in err.getvalue().splitlines() if line.startswith("say")]
    assert prompts == ["say 'lights' (1 of 2)", "say 'lights' (1 of 2)", "say 'lights' (2 of 2)"]
    assert "refused, too quiet" in err.getvalue()
    assert out.getvalue().count("saved clip") == 2


def test_a_source_that_ends_is_an_error():
    with pytest.raises(record.KwsError, match="ended"):
        record.record_session(iter([np.zeros(800, np.float32)]), "lights", 1, lambda c: Path("x"), io.StringIO(),
                              io.StringIO())


def test_speaker_and_word_names():
    assert record.check_speaker("dad-2") == "dad-2"
    for bad in ("", "a b", "x_nohash_", "a/b", "x" * 41):
        with pytest.raises(record.KwsError, match="speaker name"):
            record.check_speaker(bad)
    for bad in ("_silence_", "a/b", "..", "", "-x"):
        with pytest.raises(record.KwsError, match="word folder"):
            record.check_word(bad)
    assert record.SPEAKER_PATTERN.fullmatch(record.default_speaker())


# --- --from-wav ---------------------------------------------------------------------------------------------

WORDS = ("left", "right", "stop", "up", "go")


def _long_recording(tmp_path: Path, parts, rate: int = RATE) -> Path:
    audio, _ = place(parts, noise=0.005)
    path = tmp_path / "long.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def _words(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_from_wav_cuts_each_word_into_a_clip(tmp_path, capsys):
    sources = [clip(word) for word in WORDS]
    long = _long_recording(tmp_path, [1.0] + [x for s in sources for x in (s, 1.0)])
    assert cli.main(["record", "lights", "--out", str(tmp_path / "data"), "--speaker", "test",
                     "--from-wav", str(long)]) == 0
    folder = tmp_path / "data" / "lights"
    assert _words(folder) == [f"test_nohash_{n}.flac" for n in range(5)]
    for n, source in enumerate(sources):
        audio, rate = sf.read(folder / f"test_nohash_{n}.flac", dtype="float32")
        assert rate == RATE and audio.shape == (RATE,)
        assert best_match(audio, source) > 0.9, WORDS[n]  # its own word, in order
        others = [best_match(audio, other) for m, other in enumerate(sources) if m != n]
        assert max(others) < 0.5
    out = capsys.readouterr().out
    assert "5 clip(s) of 'lights' saved" in out and "0 stretch(es) refused" in out


def test_from_wav_reports_bad_stretches_and_saves_the_rest(tmp_path, capsys):
    clipped = np.clip(8 * clip("stop"), -1, 1)
    long = _long_recording(tmp_path, [1.0, clip("left"), 1.0, clipped, 1.0, clip("right"), 1.0, burst(1.5), 1.0,
                                      clip("up"), 1.0])
    assert cli.main(["record", "lights", "--out", str(tmp_path / "data"), "--speaker", "test",
                     "--from-wav", str(long)]) == 0
    assert _words(tmp_path / "data" / "lights") == [f"test_nohash_{n}.flac" for n in range(3)]
    captured = capsys.readouterr()
    refused = [line for line in captured.err.splitlines() if "refused" in line]
    assert len(refused) == 2
    assert "clipped" in refused[0] and "too long" in refused[1]
    assert "3 clip(s) of 'lights' saved" in captured.out and "2 stretch(es) refused" in captured.out


def test_numbers_continue_after_the_files_already_there(tmp_path):
    folder = tmp_path / "data" / "lights"
    folder.mkdir(parents=True)
    for name in ("test_nohash_0.flac", "test_nohash_7.wav", "other_nohash_12.flac", "test-2_nohash_30.flac"):
        sf.write(folder / name, np.zeros(RATE, np.float32), RATE)
    long = _long_recording(tmp_path, [1.0, clip("left"), 1.0, clip("up"), 1.0], rate=44100)  # a phone's rate
    args = ["record", "lights", "--out", str(tmp_path / "data"), "--speaker", "test", "--from-wav", str(long)]
    assert cli.main(args) == 0
    assert cli.main(args) == 0  # a second session adds to the folder
    assert {p.name for p in folder.iterdir()} >= {f"test_nohash_{n}.flac" for n in (8, 9, 10, 11)}
    assert len(list(folder.iterdir())) == 8  # no temporary files left
    assert sf.info(folder / "test_nohash_8.flac").samplerate == RATE


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("kws: error: ")
    return err


@pytest.mark.parametrize("extra, expected", [
    (["--device", "1"], "leave out one of the two"),
    (["--count", "3"], "leave out --count"),
    (["--speaker", "a b"], "speaker name"),
])
def test_from_wav_option_mistakes(tmp_path, capsys, extra, expected):
    long = _long_recording(tmp_path, [1.0, clip("left"), 1.0])
    assert cli.main(["record", "lights", "--out", str(tmp_path), "--from-wav", str(long), *extra]) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "lights").exists()


@pytest.mark.parametrize("argv, expected", [
    (["record", "--out", "x"], "needs a WORD and --out"),
    (["record", "lights"], "needs a WORD and --out"),
    (["record", "_silence_", "--out", "x"], "cannot be a word folder"),
    (["record", "lights", "--out", "x", "--count", "0"], "--count must be at least 1"),
    (["record", "lights", "--out", "x", "--from-wav", "no/such.wav"], "not found"),
    (["record", "lights", "--out", "x", "--synthetic", "3", "--count", "2"], "leave out --count"),
    (["record", "lights", "--out", "x", "--synthetic", "3", "--speaker", "me"], "leave out --speaker"),
    (["record", "lights", "--out", "x", "--synthetic", "0"], "--synthetic must be at least 1"),
])
def test_command_line_mistakes(argv, expected, capsys):
    assert cli.main(argv) == 2
    assert expected in _one_line_error(capsys)


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed (the README's test command "
                    "installs it)")
def test_synthetic_takes_are_cut_and_saved_as_a_microphone_take_would_be(tmp_path, capsys):
    assert cli.main(["record", "lights", "--out", str(tmp_path), "--synthetic", "12"]) == 0
    assert "12 synthetic clip(s) of 'lights' saved" in capsys.readouterr().out
    files = sorted((tmp_path / "lights").glob("*.flac"))
    speakers = {path.name.split("_nohash_")[0] for path in files}
    assert len(files) == 12 and len(speakers) > 3 and all(s.startswith("espeak-") for s in speakers)
    for path in files:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == RATE and len(audio) == RATE and record.judge_take(np.pad(audio, RATE // 2)).kept
    again = [audio for _, audio in synthetic.synthetic_takes("lights", 3)]
    assert all(np.array_equal(a, b) for a, b in zip(again, [audio for _, audio in synthetic.synthetic_takes("lights", 3)]))


def test_a_recording_without_words_or_good_words_is_an_error(tmp_path, capsys):
    silent = _long_recording(tmp_path, [3.0])
    assert cli.main(["record", "lights", "--out", str(tmp_path / "data"), "--from-wav", str(silent)]) == 2
    assert "no word found" in _one_line_error(capsys)
    loud = _long_recording(tmp_path, [1.0, np.clip(8 * clip("stop"), -1, 1), 1.0])
    assert cli.main(["record", "lights", "--out", str(tmp_path / "data"), "--from-wav", str(loud)]) == 2
    err = capsys.readouterr().err
    assert "refused, clipped" in err and "kws: error: no clip saved" in err
    assert not (tmp_path / "data" / "lights").exists() or not list((tmp_path / "data" / "lights").iterdir())


def test_record_needs_no_pytorch(tmp_path):
    """`kws record` in an install without PyTorch: importing torch would fail, and the command works."""
    long = _long_recording(tmp_path, [1.0, clip("left"), 1.0])
    code = ("import sys\n"
            "sys.modules['torch'] = sys.modules['torchaudio'] = None  # import torch now fails\n"
            "from kws.cli import main\n"
            f"sys.exit(main(['record', 'lights', '--out', {str(tmp_path / 'data')!r}, '--speaker', 'x', "
            f"'--from-wav', {str(long)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "lights" / "x_nohash_0.flac").is_file()


# --- the microphone -----------------------------------------------------------------------------------------

needs_pulseaudio = pytest.mark.service(virtual_mic.available(), "PulseAudio is not installed (.ci/run installs it)")


def _room_with_two_words(path: Path) -> Path:
    """Two 'yes' in room noise as loud as the clip's own (-40 dBFS), as a microphone in a quiet room hears."""
    audio, _ = place([1.0, clip("yes"), 1.5, clip("yes"), 1.5], noise=0.01, seed=1)
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def test_the_room_recording_gives_two_takes_offline(tmp_path):
    """The audio the microphone test plays, fed straight to the session: what the microphone path must give."""
    audio, _ = sf.read(_room_with_two_words(tmp_path / "room.wav"), dtype="float32")
    chunks = (audio[i:i + 800] for i in range(0, len(audio), 800))
    kept = []
    record.record_session(chunks, "yes", 2, lambda c: kept.append(c) or Path("x"), io.StringIO(), io.StringIO())
    assert len(kept) == 2 and all(best_match(c, clip("yes")) > 0.8 for c in kept)  # 0.88: the room noise added


@needs_pulseaudio
def test_takes_from_the_virtual_microphone_are_saved(tmp_path):
    room = _room_with_two_words(tmp_path / "room.wav")
    out = tmp_path / "data"
    with virtual_mic.virtual_microphone(tmp_path / "pulse") as mic:
        recorder = subprocess.Popen([sys.executable, "-m", "kws", "record", "yes", "--out", str(out), "--count", "2",
                                     "--speaker", "test"], cwd=ROOT, env=mic.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            lines = [read_line(recorder.stderr, 30)]
            while "(1 of 2)" not in lines[-1]:
                assert lines[-1], lines  # it ended before asking
                lines.append(read_line(recorder.stderr, 30))
            mic.play(room)
            stdout, stderr = recorder.communicate(timeout=30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.communicate(timeout=10)
    assert recorder.returncode == 0, stderr
    assert "say 'yes' (2 of 2)" in stderr and "refused" not in stderr, stderr
    assert _words(out / "yes") == ["test_nohash_0.flac", "test_nohash_1.flac"]
    for name in _words(out / "yes"):
        audio, rate = sf.read(out / "yes" / name, dtype="float32")
        assert rate == RATE and audio.shape == (RATE,)
        assert best_match(audio, clip("yes")) > 0.75  # the word itself (0.88 offline: the room noise added)
    assert sum(line.startswith("saved ") for line in stdout.splitlines()) == 2


@needs_pulseaudio
def test_no_microphone_is_a_one_line_error_that_points_to_from_wav(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PULSE_SERVER": f"unix:{tmp_path}/nothing-here"}
    result = subprocess.run([sys.executable, "-m", "kws", "record", "yes", "--out", str(tmp_path / "data")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("kws: error: no microphone found") and "--from-wav FILE" in result.stderr


@needs_pulseaudio
def test_an_unknown_device_is_a_one_line_error(tmp_path):
    with virtual_mic.virtual_microphone(tmp_path / "pulse") as mic:
        result = subprocess.run([sys.executable, "-m", "kws", "record", "yes", "--out", str(tmp_path / "data"),
                                 "--device", "no such mic"], cwd=ROOT, env=mic.env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("kws: error: no input device 'no such mic'"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
