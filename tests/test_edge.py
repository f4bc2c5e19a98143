"""The device runtime on a small exported model: chunking, files, stdin, bad input, no torch."""

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper

from edge import EdgeError, Recognizer
from edge.listen import main

from conftest import RATE, STREAM_WORDS as WORDS, tone_stream

ROOT = Path(__file__).resolve().parent.parent


def _feed(recognizer, audio, sizes):
    recognizer.reset()
    out, start, i = [], 0, 0
    while start < len(audio):
        size = sizes[i % len(sizes)]
        out += recognizer.process(audio[start:start + size])
        start, i = start + size, i + 1
    return out


def test_results_do_not_depend_on_chunk_size(model):
    recognizer = Recognizer.from_onnx(model, threshold=0.5)
    audio, _ = tone_stream(WORDS, 9.0)
    reference = _feed(recognizer, audio, [160])
    assert len(reference) >= 2
    for sizes in ([1000], [4000], [1, 7, 480, 3333, 90]):
        assert _feed(recognizer, audio, sizes) == reference
    recognizer.reset()
    scores = recognizer.scores(audio)
    recognizer.reset()
    chunked = [s for i in range(0, len(audio), 777) for s in recognizer.scores(audio[i:i + 777])]
    assert len(scores) == len(chunked) == len(audio) // 480
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(scores, chunked))


def test_hearing_at_several_speeds_averages_each_speed_on_the_streams_clock(model):
    """Each step's probabilities are the mean of the stream's own and those of the stream played slower
    and faster (each speed's latest step at that time); words are still heard when they were said, and
    how the audio is cut into chunks changes nothing."""
    import soxr

    audio, ends = tone_stream(WORDS, 9.0)
    once = Recognizer.from_onnx(model, threshold=0.5, speeds=(1,))
    assert once.speeds == (1.0,)
    several = Recognizer.from_onnx(model, threshold=0.5, speeds=(0.9, 1, 1.1))
    assert several.speeds == (1.0, 0.9, 1.1)
    heard = several.scores(audio)
    expected = [p for _, p in once.scores(audio)]
    for speed in (0.9, 1.1):
        played = soxr.ResampleStream(RATE, RATE / speed, 1, dtype="float32").resample_chunk(audio)
        once.reset()
        steps = once.scores(played)
        times = np.array([t for t, _ in steps]) * speed  # back on the stream's clock
        for i, (time_s, _) in enumerate(heard):
            latest = max(np.searchsorted(times, time_s + once.step_s / 2 + 1e-6, side="right") - 1, 0)
            expected[i] = expected[i] + steps[latest][1]
    assert len(expected) - 5 <= len(heard) < len(expected)  # the last steps wait for the other speeds
    assert np.allclose([p for _, p in heard], np.array(expected[:len(heard)]) / 3, atol=1e-6)
    once.reset()
    assert not np.allclose([p for _, p in heard], [p for _, p in once.scores(audio)[:len(heard)]], atol=1e-3)
    several.reset()
    chunked = [s for i in range(0, len(audio), 777) for s in several.scores(audio[i:i + 777])]
    assert len(chunked) == len(heard) and all(a[0] == b[0] and np.array_equal(a[1], b[1])
                                              for a, b in zip(heard, chunked))

    reference = _feed(several, audio, [160])
    assert _feed(several, audio, [1, 7, 480, 3333, 90]) == reference
    assert [d.label for d in reference] == [d.label for d in _feed(once, audio, [160])]
    assert all(abs(d.time_s - b.time_s) <= 0.1 for d, b in zip(reference, _feed(once, audio, [160])))
    assert several.fresh().speeds == several.speeds
    for speeds, message in (((0.9, 1.1), "include 1"), ((1, 3), "from 0.8 to 1.25"), ((1, 1), "distinct"),
                            (("fast",), "must be numbers")):
        with pytest.raises(EdgeError, match=message):
            Recognizer.from_onnx(model, speeds=speeds)


def test_listen_speeds_option(model, stream_wav, capsys):
    """--speeds overrides the model's own; a list without 1 is refused in one line."""
    assert main(["--model", str(model), "--wav", str(stream_wav), "--speeds", "1,0.95,1.05", "--threshold", "0.5",
                 "--json"]) == 0
    assert _events(capsys.readouterr().out)
    assert main(["--model", str(model), "--wav", str(stream_wav), "--speeds", "0.95"]) == 2
    assert "include 1" in _error(capsys)


def test_public_surface(model):
    recognizer = Recognizer.from_onnx(model)
    assert recognizer.sample_rate == 16000
    assert recognizer.labels == ("_silence_", "_unknown_", "yes", "no", "stop")
    assert recognizer.streaming
    with pytest.raises(AttributeError):
        recognizer.sample_rate = 8000


def test_window_only_fallback_hears_the_same_words(model):
    audio, _ = tone_stream(WORDS, 9.0)
    streamed = {d.label for d in _feed(Recognizer.from_onnx(model, threshold=0.5), audio, [1600])}
    window = Recognizer.from_onnx(model, threshold=0.5, streaming=False)
    assert not window.streaming
    assert {d.label for d in _feed(window, audio, [1600])} == streamed


def test_a_bad_chunk_is_heard_as_silence_and_time_stays_true(model, caplog):
    """A chunk holding NaN is reported and heard as silence of its length: the words after it fire at
    the same times as in the same audio with real silence there."""
    audio, _ = tone_stream(WORDS, 9.0)
    audio[int(2.2 * RATE):int(2.5 * RATE)] = 0.0  # between "yes" and "stop"
    broken = audio.copy()
    broken[int(2.2 * RATE):int(2.5 * RATE)] = np.nan
    recognizer = Recognizer.from_onnx(model, threshold=0.5)
    reference = _feed(recognizer, audio, [int(0.1 * RATE)])
    assert len(reference) >= 2
    assert _feed(recognizer, broken, [int(0.1 * RATE)]) == reference
    assert recognizer.bad_chunks == 3 and recognizer.seconds_processed == pytest.approx(9.0, abs=0.03)
    assert "replaced by silence" in caplog.text
    assert len([r for r in caplog.records if "NaN" in r.getMessage()]) == 1  # one line, not one per chunk


def test_int16_and_one_channel_arrays_give_the_same_words(model):
    audio, _ = tone_stream(WORDS, 9.0)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    recognizer = Recognizer.from_onnx(model, threshold=0.5)
    reference = _feed(recognizer, pcm.astype(np.float32) / 32768, [1600])
    assert len(reference) >= 2
    assert _feed(recognizer, pcm, [1600]) == reference
    assert _feed(recognizer, pcm.astype(np.float64) / 32768, [1600]) == reference
    assert _feed(recognizer, (pcm.astype(np.float32) / 32768)[:, None], [1600]) == reference


@pytest.mark.parametrize("chunk, message", [
    (np.zeros((1600, 2), np.float32), r"mono.*shape \(1600, 2\)"),
    (np.zeros(1600, np.int32), "not int32"),
    (np.zeros(1600, np.uint8), "not uint8"),
    (np.array(["a", "b"]), "not <U1"),
])
def test_audio_of_another_shape_or_type_is_refused(model, chunk, message):
    with pytest.raises(EdgeError, match=message):
        Recognizer.from_onnx(model).process(chunk)


def test_integer_pcm_passed_as_float_is_reported(model, caplog):
    recognizer = Recognizer.from_onnx(model)
    recognizer.process(np.full(1600, 12000.0, np.float32))
    assert "is it integer PCM passed as float" in caplog.text


def test_skip_moves_the_clock_on_and_starts_afresh(model):
    """Audio lost in a gap: events after it carry their true times, and nothing heard before the gap
    carries over into the model's state."""
    audio, _ = tone_stream(WORDS, 9.0)
    split = int(3.0 * RATE)  # a whole number of steps, in the silence after "yes"
    recognizer = Recognizer.from_onnx(model, threshold=0.5)
    fresh = _feed(recognizer, audio[split:], [1600])
    assert fresh
    recognizer.reset()
    before = recognizer.process(audio[:split])
    recognizer.skip(5.0)
    after = recognizer.process(audio[split:])
    assert before and [d.label for d in after] == [d.label for d in fresh]
    assert [d.time_s for d in after] == pytest.approx([d.time_s + 8.0 for d in fresh])
    assert recognizer.seconds_processed == pytest.approx(8.0 + len(audio[split:]) / RATE, abs=0.03)


def test_listen_wav_json_gives_the_words_at_their_times(model, stream_wav, capsys):
    assert main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5"]) == 0
    out = capsys.readouterr()
    events = [json.loads(line) for line in out.out.splitlines()]
    assert all(set(e) == {"label", "score", "time", "wall_time"} for e in events)
    keywords = [(word, start_s) for word, start_s in WORDS if word != "happy"]
    assert [e["label"] for e in events] == [word for word, _ in keywords]
    for event, (word, start_s) in zip(events, keywords):  # a tone word lasts 0.5 s
        assert start_s < event["time"] <= start_s + 1.5, (word, event)
        assert 0.5 <= event["score"] <= 1.0
    walls = [datetime.datetime.fromisoformat(e["wall_time"]) for e in events]
    assert walls == sorted(walls) and all(w.tzinfo is not None for w in walls)
    assert abs((walls[0] - datetime.datetime.now().astimezone()).total_seconds()) < 60
    assert f"{len(events)} event(s)" in out.err


def test_a_file_without_keywords_says_so_on_stderr(model, tmp_path, capsys):
    """Stdout stays empty (it carries only events); stderr says how much audio was heard and that no
    keyword was in it, so a quiet run is not taken for a broken one."""
    sf.write(tmp_path / "quiet.wav", np.zeros(int(2.5 * RATE), np.float32), RATE, subtype="PCM_16")
    assert main(["--model", str(model), "--wav", str(tmp_path / "quiet.wav"), "--json"]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert "2.5 s of audio processed, no keyword heard" in out.err


def test_stereo_44k_file_gives_the_same_words(model, stream_wav, tmp_path, capsys, caplog):
    audio, _ = sf.read(stream_wav, dtype="float32")
    import soxr

    stereo = np.stack([soxr.resample(audio, RATE, 44100)] * 2, axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 44100, subtype="PCM_24")
    main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5"])
    mono = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert main(["--model", str(model), "--wav", str(tmp_path / "stereo.wav"), "--json", "--threshold", "0.5"]) == 0
    out = capsys.readouterr()
    assert [json.loads(line)["label"] for line in out.out.splitlines()] == mono
    assert "2 channels; mixing them down" in caplog.text


def test_runs_with_torch_unimportable(model, stream_wav):
    """The device side must never need PyTorch: run it where importing torch fails."""
    code = (
        "import sys\n"
        "for name in ('torch', 'torchaudio', 'librosa'):\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        "from edge.listen import main\n"
        f"rc = main(['--model', {str(model)!r}, '--wav', {str(stream_wav)!r}, '--json', '--threshold', '0.5'])\n"
        "assert rc == 0, rc\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()]


def _events(lines: str) -> list[tuple[str, float]]:
    return [(e["label"], e["time"]) for e in map(json.loads, lines.splitlines())]


def _stdin(model, data: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(model), "--stdin", "--json",
                           "--threshold", "0.5", *args], input=data, capture_output=True, cwd=ROOT, timeout=120)


def test_stdin_raw_pcm(model, stream_wav, capsys):
    audio, _ = sf.read(stream_wav, dtype="int16")
    result = _stdin(model, audio.tobytes())
    assert result.returncode == 0, result.stderr
    main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5"])
    reference = _events(capsys.readouterr().out)
    assert len(reference) >= 2 and _events(result.stdout.decode()) == reference


def test_stdin_at_another_rate_and_format(model, stream_wav, capsys):
    """48 kHz float samples on stdin, declared with --stdin-rate and --stdin-format: the same words."""
    main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5"])
    reference = [label for label, _ in _events(capsys.readouterr().out)]
    audio, _ = sf.read(stream_wav, dtype="float32")
    import soxr

    high = soxr.resample(audio, RATE, 48000).astype("<f4")
    result = _stdin(model, high.tobytes(), "--stdin-rate", "48000", "--stdin-format", "f32le")
    assert result.returncode == 0, result.stderr
    assert [label for label, _ in _events(result.stdout.decode())] == reference
    assert "9.0 s of audio processed" in result.stderr.decode()


def test_stdin_options_need_stdin(model, stream_wav, capsys):
    assert main(["--model", str(model), "--wav", str(stream_wav), "--stdin-rate", "48000"]) == 2
    assert "add --stdin" in _error(capsys)
    assert _stdin(model, b"", "--stdin-rate", "7").returncode == 2


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("edge.listen: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _onnx_file(path: Path, input_shape, metadata: dict) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["audio"], ["logits"])], "g",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, input_shape)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def test_bad_models(tmp_path, stream_wav, capsys):
    wav = ["--wav", str(stream_wav)]
    assert main(["--model", str(tmp_path / "missing.onnx"), *wav]) == 2
    assert "not found" in _error(capsys)
    (tmp_path / "text.onnx").write_text("not a model")
    assert main(["--model", str(tmp_path / "text.onnx"), *wav]) == 2
    assert "not a usable ONNX model" in _error(capsys)
    assert main(["--model", str(_onnx_file(tmp_path / "bare.onnx", ["batch", 16000], {})), *wav]) == 2
    assert "lacks kws metadata" in _error(capsys)
    meta = {"labels": '["_silence_", "_unknown_", "yes"]', "sample_rate": "16000", "clip_samples": "16000"}
    assert main(["--model", str(_onnx_file(tmp_path / "short.onnx", ["batch", 8000], meta)), *wav]) == 2
    assert "[batch, 16000]" in _error(capsys)


def _with_metadata(model: Path, folder: Path, key: str, change) -> Path:
    """A copy of `model` (and its streaming twin) with metadata entry `key` replaced by change(its value)."""
    proto = onnx.load(str(model))
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = change(entry.value)
    folder.mkdir(exist_ok=True)
    onnx.save(proto, str(folder / model.name))
    stream = model.with_name("kws.stream.onnx")
    (folder / stream.name).write_bytes(stream.read_bytes())
    return folder / model.name


def _with_detection(model: Path, folder: Path, detection: dict) -> Path:
    return _with_metadata(model, folder, "detection", lambda value: json.dumps({**json.loads(value), **detection}))


@pytest.mark.parametrize("detection, message", [({"average_ms": 0}, "average_ms must be more than 0"),
                                                ({"thresholds": {"left": 0.9}}, "not keywords of the model"),
                                                ({"hold_ms": 5}, "unexpected keyword")])
def test_stored_settings_that_cannot_work_are_refused_at_load(model, tmp_path, stream_wav, capsys, detection, message):
    broken = _with_detection(model, tmp_path / "broken", detection)
    assert main(["--model", str(broken), "--wav", str(stream_wav)]) == 2
    assert message in _error(capsys)


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n", b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_bad_audio_files(model, tmp_path, capsys, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    assert main(["--model", str(model), "--wav", str(path)]) == 2
    assert "bad.wav" in _error(capsys)


def test_a_wav_cut_short_is_an_error_not_a_shorter_recording(model, stream_wav, tmp_path, capsys):
    whole = stream_wav.read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    assert main(["--model", str(model), "--wav", str(tmp_path / "cut.wav")]) == 2
    assert "cut.wav is truncated" in _error(capsys)


def test_missing_audio_file_and_bad_threshold(model, tmp_path, stream_wav, capsys):
    assert main(["--model", str(model), "--wav", str(tmp_path / "nothing.wav")]) == 2
    assert "not found" in _error(capsys)
    assert main(["--model", str(model), "--wav", str(stream_wav), "--threshold", "3"]) == 2
    assert "threshold" in _error(capsys)


def test_recorder_leaves_a_whole_file(model, stream_wav, tmp_path):
    assert main(["--model", str(model), "--wav", str(stream_wav), "--record", str(tmp_path / "heard.wav")]) == 0
    heard, rate = sf.read(tmp_path / "heard.wav")
    assert rate == 16000 and len(heard) == sf.info(stream_wav).frames
    assert [p.name for p in tmp_path.iterdir()] == ["heard.wav"]


def test_recognizer_api_errors(tmp_path):
    with pytest.raises(EdgeError, match="not found"):
        Recognizer.from_onnx(tmp_path / "none.onnx")


def _labels_heard(model, path, capsys) -> list[str]:
    assert main(["--model", str(model), "--wav", str(path), "--json", "--threshold", "0.5"]) == 0
    return [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("subtype, rate", [("PCM_U8", RATE), ("PCM_24", RATE), ("PCM_16", 48000), ("FLOAT", 44100)])
def test_other_sample_formats_and_rates_give_the_same_words(model, stream_wav, tmp_path, capsys, subtype, rate):
    import soxr

    audio, _ = sf.read(stream_wav, dtype="float32")
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, soxr.resample(audio, RATE, rate) if rate != RATE else audio, rate, subtype=subtype)
    assert _labels_heard(model, path, capsys) == _labels_heard(model, stream_wav, capsys)


def test_a_clipped_full_scale_signal_is_processed(model, stream_wav, tmp_path, capsys, caplog):
    """Samples at full scale are audio, not a fault: all of it heard, none of it silenced or warned about."""
    audio, _ = sf.read(stream_wav, dtype="float32")
    sf.write(tmp_path / "loud.wav", np.clip(audio * 50, -1, 1), RATE, subtype="PCM_16")
    assert main(["--model", str(model), "--wav", str(tmp_path / "loud.wav"), "--json", "--step-scores"]) == 0
    out, err = capsys.readouterr()
    steps = [line for line in map(json.loads, out.splitlines()) if "scores" in line]
    step_s = Recognizer.from_onnx(model).step_s
    assert len(steps) == round(9.0 / step_s) and steps[-1]["time"] == pytest.approx(9.0, abs=step_s)  # all 9 s
    assert all(0 <= value <= 1 for step in steps for value in step["scores"].values())
    assert err.startswith("edge.listen: 9.0 s of audio processed") and len(err.splitlines()) == 1, err
    assert not caplog.records  # no chunk replaced by silence, none taken for integer PCM


def test_labels_from_the_model_are_printed_without_control_characters(model, stream_wav, tmp_path, capsys):
    escape = "\x1b[2J\x1b[31m"
    tricky = _with_metadata(model, tmp_path / "tricky", "labels",
                            lambda value: json.dumps([l + escape if l == "yes" else l for l in json.loads(value)]))
    assert main(["--model", str(tricky), "--wav", str(stream_wav), "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "yes?[2J?[31m" in out and "\x1b" not in out
    assert main(["--model", str(tricky), "--wav", str(stream_wav), "--threshold", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] == "yes" + escape  # JSON escapes it


def _one_line_error(capsys, code: int) -> str:
    """The one line a refused run prints (argparse's mistakes as well as the program's), with exit code 2."""
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (code, err)
    assert err.startswith("edge.listen: error:")
    return err


@pytest.mark.parametrize("flags, says", [
    (["--threshold", "1.5"], "argument --threshold: '1.5' is not a score in (0, 1]"),
    (["--threshold", "abc"], "argument --threshold: 'abc' is not a score"),
    (["--speeds", "abc"], "not 'abc'"),
    (["--speeds", "0.5,1,2"], "from 0.8 to 1.25"),
    (["--step-scores"], "add --json"),
    (["--device", "2"], "--device chooses a microphone; --wav reads no microphone"),
    (["--mqtt-topic", "home"], "--mqtt-topic is for publishing to MQTT; add --mqtt-url"),
    (["--name", "box", "--mqtt-ca", "ca.pem"], "--mqtt-ca, --name are for publishing to MQTT; add --mqtt-url"),
], ids=["threshold-above-1", "threshold-not-a-number", "speeds-not-numbers", "speeds-too-far", "step-scores-alone",
        "device-with-wav", "mqtt-topic-without-broker", "mqtt-flags-without-broker"])
def test_bad_flags_are_one_line_errors_about_the_flag(model, stream_wav, capsys, flags, says):
    err = _one_line_error(capsys, main(["--model", str(model), "--wav", str(stream_wav), *flags]))
    assert says in err and "[" not in err.split("error:")[1] and str(model) not in err


@pytest.mark.parametrize("flags, says", [
    (["--device", "1"], "--device chooses a microphone; --stdin reads no microphone"),
    (["--realtime"], "--realtime paces a --wav file; add --wav"),
], ids=["device", "realtime"])
def test_flags_that_stdin_would_ignore_are_refused(model, capsys, flags, says):
    assert says in _one_line_error(capsys, main(["--model", str(model), "--stdin", *flags]))


def test_the_recognizer_blames_a_bad_threshold_not_the_model(model):
    with pytest.raises(EdgeError) as error:
        Recognizer.from_onnx(model, threshold=1.5)
    assert str(model) not in str(error.value) and "(0, 1]" in str(error.value)


def test_paths_that_are_not_files_are_said_to_be_what_they_are(model, stream_wav, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "kws.onnx").write_bytes(model.read_bytes())
    err = _one_line_error(capsys, main(["--model", str(tmp_path / "models"), "--wav", str(stream_wav)]))
    assert "is a folder" in err and str(tmp_path / "models" / "kws.onnx") in err
    err = _one_line_error(capsys, main(["--model", str(model), "--wav", "/dev/null"]))
    assert "/dev/null is not a regular file" in err and "not found" not in err
    err = _one_line_error(capsys, main(["--model", str(model), "--wav", str(tmp_path)]))
    assert "is a folder, not an audio file" in err


def test_record_into_a_folder_that_does_not_exist(model, stream_wav, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "x.wav"
    err = _one_line_error(capsys, main(["--model", str(model), "--wav", str(stream_wav), "--record", str(target)]))
    assert f"folder {target.parent} does not exist" in err
    err = _one_line_error(capsys, main(["--model", str(model), "--wav", str(stream_wav), "--record", str(tmp_path)]))
    assert "is a folder" in err


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_sound_file_on_stdin_is_refused_not_heard_as_noise(model, stream_wav, tmp_path, fmt):
    audio, _ = sf.read(stream_wav, dtype="float32")
    sf.write(tmp_path / "file", audio, RATE, format=fmt)
    result = _stdin(model, (tmp_path / "file").read_bytes())
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1 and f"stdin holds a {fmt} file" in err
    assert "--wav FILE" in err and result.stdout == b""


def test_an_events_score_is_the_peak_of_its_smoothed_score(model):
    """The score says how sure the model was: the highest its label's smoothed score reached from the
    crossing to the report (not the score at the crossing, which is the threshold's neighbour)."""
    recognizer = Recognizer.from_onnx(model, threshold=0.5)
    audio, _ = tone_stream(WORDS, 9.0)
    steps = recognizer.steps(audio)
    fired = [(i, d) for i, step in enumerate(steps) for d in step.detections]
    assert len(fired) >= 2
    peak_steps = round(recognizer.settings.peak_ms / 1000 / recognizer.step_s)
    for i, detection in fired:
        assert detection.time_s == steps[i].time_s
        rising = [step.scores[detection.label] for step in steps[max(0, i - peak_steps):i + 1]]
        crossing = next(j for j, score in enumerate(rising) if score >= 0.5)  # the first step at the threshold
        assert detection.score == pytest.approx(max(rising[crossing:]))
        assert detection.score > rising[crossing] or crossing == len(rising) - 1


def test_step_scores_in_json_lines(model, stream_wav, capsys):
    """--json --step-scores: a line per model step with every keyword's smoothed score, the events among
    them as before (and the same ones)."""
    assert main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5"]) == 0
    events = _events(capsys.readouterr().out)
    assert main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5",
                 "--step-scores"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [line for line in lines if "scores" in line]
    assert [(e["label"], e["time"]) for e in lines if "label" in e] == events
    assert len(steps) == 9.0 // 0.03 and all(set(s["scores"]) == {"yes", "no", "stop"} for s in steps)
    assert [s["time"] for s in steps] == sorted(s["time"] for s in steps)
    for label, time_s in events:  # each event follows the step that reported it, which is over the threshold
        (step,) = [s for s in steps if s["time"] == time_s]
        assert step["scores"][label] >= 0.5 or lines[lines.index(step) - 1]["scores"][label] >= 0.5


def test_meter_draws_each_keyword_against_its_threshold():
    import io

    from edge.detect import Step
    from edge.meter import Meter

    screen = io.StringIO()
    meter = Meter({"yes": 0.5, "no": 0.8}, stream=screen, redraw=True)
    meter.show([Step(0.02, {"yes": 0.1, "no": 0.2}), Step(0.04, {"yes": 0.6, "no": 0.1})])
    first = screen.getvalue()
    assert first.count("\n") == 3 and "\x1b[" in first  # a heading and a line per keyword, redrawn in place
    yes_line = next(line for line in first.splitlines() if line.startswith("yes"))
    assert "0.60 / 0.50" in yes_line and "above" in yes_line and yes_line.index("|") < yes_line.rindex("#")
    no_line = next(line for line in first.splitlines() if line.startswith("no"))
    assert "0.20 / 0.80" in no_line and "above" not in no_line  # the highest of the steps shown
    meter.show([Step(0.06, {"yes": 0.0, "no": 0.0})])
    assert screen.getvalue()[len(first):].startswith("\x1b[3F")  # back over the 3 lines drawn
    assert "highest 0.60" in screen.getvalue().splitlines()[-2]
    meter.clear()
    assert screen.getvalue().endswith("\x1b[3F\x1b[J")
    plain = io.StringIO()
    Meter({"yes": 0.5}, stream=plain, redraw=False).show([Step(1.5, {"yes": 0.7})])
    assert plain.getvalue() == "    1.50 s  yes 0.70*\n"


def test_listen_meter_on_a_file(model, stream_wav, capsys):
    assert main(["--model", str(model), "--wav", str(stream_wav), "--threshold", "0.5", "--meter"]) == 0
    out = capsys.readouterr()
    meter = [line for line in out.err.splitlines() if re.match(r" +\d+\.\d\d s  yes \d\.\d\d", line)]
    assert len(meter) >= 80  # a line per 0.1 s of the 9 s file (stderr is no terminal here)
    assert any("yes" in line and "*" in line.split("yes")[1][:6] for line in meter)
    assert len(out.out.splitlines()) >= 2  # the events still on stdout


@pytest.mark.parametrize("program", ["edge.listen", "edge.serve"])
def test_every_option_has_a_description_with_its_values(program):
    from edge.listen import build_parser as listen_parser
    from edge.serve import build_parser as serve_parser

    parser = (listen_parser if program == "edge.listen" else serve_parser)()
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = action.help or ""
        assert len(text.split()) >= 4, (action.option_strings, text)
        if action.choices:
            assert all(str(choice) in text for choice in action.choices), (action.option_strings, text)
        if action.nargs != 0 and not action.required:  # takes a value: says what it is when not given
            assert "default" in text, (action.option_strings, text)
