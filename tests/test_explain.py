"""`kws explain` on the shipped model and a real clip: the runtime's own scores and events, gates that are
the LSTM's own, aligned with the runtime's steps, and one-line errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.runtime import Recognizer, StreamScorer, read_model_info
from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.cli import main
from kws.data import load_audio
from kws.explain import GATE_NAMES, explain, lstm_gates, model_steps
from kws.model import stack_frames

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "kws.onnx"
WEIGHTS = ROOT / "models" / "kws.pt"
(YES,) = (Path(__file__).parent / "data" / "clips").glob("yes_*.flac")


@pytest.fixture(scope="module")
def explanation():
    return explain(YES, MODEL)


@pytest.fixture(scope="module")
def network():
    model, _, _ = model_from_checkpoint(load_checkpoint(WEIGHTS), WEIGHTS)
    return model


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("kws: error:"), err
    return err


def _feed(recognizer: Recognizer, audio: np.ndarray, chunk: int) -> list:
    return [step for start in range(0, len(audio), chunk) for step in recognizer.scores(audio[start:start + chunk])]


def test_command_writes_a_picture_and_reports_yes(tmp_path, capsys):
    import matplotlib.image

    picture = tmp_path / "yes.png"
    assert main(["explain", str(YES), "--model", str(MODEL), "--out", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "event yes at 1.00 s" in out
    assert "yes: step max" in out and ": fired" in out
    assert "no gates" not in out
    image = matplotlib.image.imread(picture)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # drawn on, not blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yes.png"]  # no temporary left beside it


def test_step_scores_and_events_are_the_runtimes(explanation):
    audio = load_audio(YES, 16000)
    recognizer = Recognizer.from_onnx(MODEL)  # stored settings, all speeds
    assert explanation.speeds == recognizer.speeds and len(recognizer.speeds) > 1
    steps = _feed(recognizer, np.concatenate([audio, np.zeros(3 * 16000, np.float32)]), 777)  # another chunking
    n = len(explanation.times_s)
    assert len(steps) >= n > 0
    np.testing.assert_array_equal(explanation.step_scores, np.array([p for _, p in steps[:n]]))
    np.testing.assert_array_equal(explanation.times_s, [t for t, _ in steps[:n]])
    # the smoothed scores are what Recognizer.steps reports
    recognizer.reset()
    reported = [s for start in range(0, len(audio), 1600) for s in recognizer.steps(audio[start:start + 1600])]
    for step, row in zip(reported, explanation.smoothed):
        assert [row[explanation.labels.index(label)] for label in step.scores] == list(step.scores.values())
    # the events are what process() and finish() report on the recording
    recognizer.reset()
    events = [d for start in range(0, len(audio), 1600) for d in recognizer.process(audio[start:start + 1600])]
    assert tuple(events + recognizer.finish()) == explanation.events
    assert [e.label for e in explanation.events] == ["yes"]


def test_gates_reproduce_the_lstm_hidden_outputs(network):
    audio = torch.from_numpy(load_audio(YES, 16000))
    with torch.no_grad():
        inputs = stack_frames(network.features(audio[None]), network.config.frame_stack)[0]  # [steps, 40]
        expected, _ = network.lstm(inputs[None])
    gates = lstm_gates(network.lstm, inputs)
    assert gates.hidden.shape == tuple(expected[0].shape) == (len(inputs), network.lstm.hidden_size)
    np.testing.assert_allclose(gates.hidden, expected[0].numpy(), atol=1e-5, rtol=0)
    for name in GATE_NAMES:
        assert gates.of(name).shape == (len(inputs), network.lstm.num_layers)


def test_gates_lie_in_the_open_unit_interval_at_every_runtime_step(explanation):
    gates = explanation.gates
    assert gates is not None
    for name in GATE_NAMES:
        values = gates.of(name)
        assert values.shape == (len(explanation.times_s), 2)
        assert ((values > 0) & (values < 1)).all()
    # the gates move with the word: not one constant row
    assert gates.forget.std(axis=0).min() > 1e-3


def test_model_steps_line_up_with_the_runtime_at_speed_1(network):
    """Step i of the PyTorch pass over (context zeros, audio) is step i of the runtime, which ends at
    (i + 1) steps: the same logits as the streaming model, the same scores as a Recognizer heard once."""
    info = read_model_info(MODEL)
    audio = load_audio(YES, info.sample_rate)
    audio = np.concatenate([audio, np.zeros(info.sample_rate // 2, np.float32)])
    context = np.zeros(int(info.stream["context_samples"]), np.float32)
    _, logits = model_steps(network, np.concatenate([context, audio]))

    scorer = StreamScorer.from_onnx(MODEL, info.stream_path)
    streamed = np.array(scorer.push(audio))  # [steps, n_labels]
    assert len(streamed) > 30
    np.testing.assert_allclose(logits[: len(streamed)], streamed, atol=1e-3, rtol=0)

    recognizer = Recognizer.from_onnx(MODEL, speeds=(1.0,))
    steps = _feed(recognizer, audio, 1600)
    assert len(steps) == len(streamed)
    step_s = info.stream["step_samples"] / info.sample_rate
    np.testing.assert_allclose([t for t, _ in steps], (np.arange(len(steps)) + 1) * step_s)
    clip_steps = int(info.stream["clip_steps"])  # the runtime's "max" readout over the last clip's steps
    held = np.array([logits[max(0, i + 1 - clip_steps): i + 1].max(axis=0) for i in range(len(steps))])
    expected = np.exp(held - held.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.array([p for _, p in steps]), expected, atol=1e-4, rtol=0)


def test_gate_steps_share_the_runtime_clock(explanation):
    step_s = explanation.times_s[0]
    np.testing.assert_allclose(explanation.times_s, (np.arange(len(explanation.times_s)) + 1) * step_s)
    assert len(explanation.gates.hidden) == len(explanation.times_s)


def test_onnx_without_weights_draws_without_gates(tmp_path, capsys):
    import matplotlib.image

    for name in ("kws.onnx", "kws.stream.onnx"):
        shutil.copy(MODEL.with_name(name), tmp_path / name)
    picture = tmp_path / "out" / "picture.png"
    assert main(["explain", str(YES), "--model", str(tmp_path / "kws.onnx"), "--out", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "event yes at" in out
    notes = [line for line in out.splitlines() if "no gates" in line]
    assert len(notes) == 1 and "kws.pt" in notes[0]
    assert matplotlib.image.imread(picture).shape[0] > 200
    assert explain(YES, tmp_path / "kws.onnx").gates is None


def test_word_draws_one_keyword(tmp_path, capsys):
    assert main(["explain", str(YES), "--model", str(MODEL), "--out", str(tmp_path / "p.png"), "--word", "no"]) == 0
    assert "no: step max" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["recording", "model", "not_a_model", "audio", "out", "word"])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    recording, model, extra = str(YES), str(MODEL), []
    if case == "recording":
        recording = str(tmp_path / "nope.wav")
    elif case == "model":
        model = str(tmp_path / "missing.onnx")
    elif case == "not_a_model":
        (tmp_path / "junk.onnx").write_bytes(b"not a model")
        model = str(tmp_path / "junk.onnx")
    elif case == "audio":
        (tmp_path / "junk.wav").write_text("not audio")
        recording = str(tmp_path / "junk.wav")
    elif case == "out":
        extra = ["--out", str(tmp_path / "picture.jpg")]
    elif case == "word":
        extra = ["--word", "sheila"]
    argv = ["explain", recording, "--model", model, *(extra or ["--out", str(tmp_path / "p.png")])]
    assert main(argv) == 2
    message = _error(capsys)
    expected = {"recording": "nope.wav", "model": "missing.onnx", "not_a_model": "junk.onnx", "audio": "junk.wav",
                "out": ".png", "word": "sheila"}[case]
    assert expected in message
    assert not (tmp_path / "p.png").exists()
