"""The live microphone path, for real: PulseAudio with a null sink whose monitor is the default input."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import virtual_mic  # noqa: E402
from conftest import read_line  # noqa: E402

pytestmark = pytest.mark.service(virtual_mic.available(), "PulseAudio is not installed (.ci/run installs it)")


@pytest.fixture
def mic_model():
    """The shipped model and the word its test clip holds."""
    return ROOT / "models" / "kws.onnx", "yes"


@pytest.fixture
def mic_clip(tmp_path) -> Path:
    import soundfile as sf

    (clip,) = (ROOT / "tests" / "data" / "clips").glob("yes_*.flac")
    audio, rate = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "yes.wav", audio, rate)
    sf.write(tmp_path / "silence.wav", 0 * audio, rate)
    return tmp_path / "yes.wav"


def _listen(mic_env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.listen", *args], cwd=ROOT, env=mic_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_keyword_played_into_the_default_microphone_is_heard(tmp_path, mic_model, mic_clip):
    model, label = mic_model
    with virtual_mic.virtual_microphone(tmp_path / "pulse") as mic:
        listener = _listen(mic.env, "--model", str(model), "--json", "--record", str(tmp_path / "heard.wav"))
        try:
            started = [read_line(listener.stderr, 30)]
            while "listening on" not in started[-1]:
                assert started[-1], started  # it ended before listening
                started.append(read_line(listener.stderr, 30))
            mic.play(mic_clip)
            mic.play(mic_clip.with_name("silence.wav"))  # let the word finish before stopping
        finally:
            listener.send_signal(signal.SIGTERM)
            out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["label"] for e in events] == [label], (events, err)
    assert (tmp_path / "heard.wav").stat().st_size > 16000  # --record kept what the microphone heard


def test_missing_device_is_a_one_line_error(tmp_path, mic_model):
    model, _ = mic_model
    with virtual_mic.virtual_microphone(tmp_path / "pulse") as mic:
        result = subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(model), "--device", "no such mic"],
                                cwd=ROOT, env=mic.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("edge.listen: error: no input device 'no such mic'")
    assert "Traceback" not in result.stderr


def test_no_audio_server_at_all(tmp_path, mic_model):
    model, _ = mic_model
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PULSE_SERVER": f"unix:{tmp_path}/nothing-here"}
    result = subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(model)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--wav" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_48khz_device_is_resampled(tmp_path, mic_model, mic_clip):
    """Many USB microphones only do 44.1 or 48 kHz: the stream is resampled to the model's rate."""
    model, label = mic_model
    code = (
        "import sys\n"
        "from edge import Recognizer\n"
        "from edge.sources import Microphone\n"
        f"recognizer = Recognizer.from_onnx({str(model)!r})\n"
        "with Microphone(recognizer.sample_rate, device_rate=48000) as microphone:\n"
        "    print('rate', microphone.device_rate, flush=True)\n"
        "    for chunk in microphone.chunks():\n"
        "        for detection in recognizer.process(chunk):\n"
        "            print('heard', detection.label, flush=True)\n"
    )
    with virtual_mic.virtual_microphone(tmp_path / "pulse") as mic:
        listener = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=mic.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert read_line(listener.stdout, 30).split() == ["rate", "48000"]
            mic.play(mic_clip)
            mic.play(mic_clip.with_name("silence.wav"))
        finally:
            listener.send_signal(signal.SIGTERM)
            out, _ = listener.communicate(timeout=30)
    assert [line.split()[1] for line in out.splitlines()] == [label]
