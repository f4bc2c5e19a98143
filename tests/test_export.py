import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from edge.runtime import StreamScorer, read_model_info
import kws.export
from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.cli import main
from kws.data import fixed_examples, load_split, scan
from kws.export import export_checkpoint, onnx_session, run_window


def _meta(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_window_model_contract(tiny_export):
    report, checkpoint = tiny_export
    model = onnx.load(str(report.window))
    (audio,) = model.graph.input
    assert audio.name == "audio" and audio.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch, samples = audio.type.tensor_type.shape.dim
    assert batch.dim_param and samples.dim_value == 16000
    assert model.graph.output[0].name == "logits"
    meta = _meta(report.window)
    state = load_checkpoint(checkpoint)
    assert json.loads(meta["labels"]) == state["labels"] == ["_silence_", "_unknown_", "yes", "no", "stop"]
    assert meta["sample_rate"] == "16000" and meta["clip_samples"] == "16000"
    assert json.loads(meta["features"])["hop_ms"] == 10
    assert meta["model_version"].startswith("kws-edge ")
    assert int(meta["parameter_count"]) == state["parameter_count"]
    session = onnx_session(report.window)
    for batch_size in (1, 5):
        assert session.run(None, {"audio": np.zeros((batch_size, 16000), np.float32)})[0].shape == (batch_size, 5)


def test_onnx_matches_pytorch_on_clips(tiny_export, tiny_data):
    report, checkpoint = tiny_export
    assert report.parity.ok and report.parity.argmax_mismatches == 0
    model, config, labels = model_from_checkpoint(load_checkpoint(checkpoint))
    waveforms, _ = fixed_examples(load_split(scan(tiny_data), "validation", labels[2:], config), config)
    with torch.no_grad():
        expected = model.clip_logits(waveforms).numpy()
        # the runtime starts as if after silence: PyTorch hears the same context of zeros before each clip
        heard = model(torch.nn.functional.pad(waveforms[:4], (352, 0))).numpy()  # [clips, steps, n_labels]
    assert np.abs(run_window(onnx_session(report.window), waveforms.numpy()) - expected).max() < 1e-3
    info = read_model_info(report.window)
    step_samples = config.model.frame_stack * 160  # a step is frame_stack hops of 10 ms
    assert (info.stream["context_samples"], info.stream["step_samples"]) == (352, step_samples)
    scorer = StreamScorer.from_onnx(report.window, report.stream)
    for clip, reference in zip(waveforms[:4].numpy(), heard):
        for chunk in (16000, step_samples, 1000, 37):  # the whole clip, one step's audio, sizes that cut steps
            scorer.reset()
            steps = np.array([step for start in range(0, len(clip), chunk)
                              for step in scorer.push(clip[start:start + chunk])])
            assert steps.shape == reference.shape == (100 // config.model.frame_stack, 5)  # 100 frames of 10 ms
            assert np.abs(steps - reference).max() < 1e-3, chunk


def test_int8_copies(tiny_export):
    report, _ = tiny_export
    assert report.int8.name == "kws.int8.onnx" and report.int8_stream.name == "kws.int8.stream.onnx"
    assert json.loads(_meta(report.int8)["stream"])["file"] == "kws.int8.stream.onnx"
    assert _meta(report.int8)["labels"] == _meta(report.window)["labels"]
    ops = {node.op_type for node in onnx.load(str(report.int8)).graph.node}
    assert "DynamicQuantizeLSTM" in ops or "MatMulInteger" in ops
    assert "STFT" in ops  # the front end stays float
    assert _meta(report.int8)["weights_id"] == _meta(report.int8_stream)["weights_id"] == _meta(report.window)["weights_id"]
    assert report.int8_parity.ok and report.int8_parity.max_logit_diff > 0  # compared, and really quantized
    assert abs(report.int8_accuracy - report.accuracy) <= 0.05


def test_int8_copies_that_disagree_write_nothing(tiny_export, tiny_data, tmp_path, monkeypatch):
    _, checkpoint = tiny_export
    monkeypatch.setattr(kws.export, "INT8_TOLERANCE", 1e-6)
    with pytest.raises(kws.export.KwsError, match="int8 copies disagree"):
        export_checkpoint(checkpoint, tmp_path / "m" / "kws.onnx", tiny_data, int8=True, verify_clips=8)
    assert not [p for p in (tmp_path / "m").iterdir()]


def test_export_that_disagrees_writes_nothing(tiny_export, tiny_data, tmp_path, monkeypatch):
    _, checkpoint = tiny_export
    monkeypatch.setattr(kws.export, "TOLERANCE", 0.0)
    with pytest.raises(kws.export.KwsError, match="disagrees"):
        export_checkpoint(checkpoint, tmp_path / "m" / "kws.onnx", tiny_data, verify_clips=4)
    assert not [p for p in (tmp_path / "m").iterdir()]


def test_eval_on_onnx_model(tiny_export, tiny_data, tmp_path, capsys):
    report, checkpoint = tiny_export
    assert main(["eval", "--checkpoint", str(report.window), "--data", str(tiny_data), "--out", str(tmp_path)]) == 0
    onnx_accuracy = json.loads((tmp_path / "eval_validation.json").read_text())["accuracy"]
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(tiny_data), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval_validation.json").read_text())["accuracy"] == onnx_accuracy
    assert onnx_accuracy == pytest.approx(report.accuracy)


def test_export_refuses_to_replace_a_model_without_force(tiny_export, tiny_data, tmp_path, capsys):
    """A shipped model is not overwritten by accident: files in the way stop the export before any work,
    untouched; --force replaces them."""
    _, checkpoint = tiny_export
    shipped = tmp_path / "models"
    shipped.mkdir()
    (shipped / "kws.stream.onnx").write_bytes(b"shipped")
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(shipped / "kws.onnx"), "--data", str(tiny_data),
            "--verify-clips", "4"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "kws.stream.onnx" in error and "--force" in error
    assert sorted(p.name for p in shipped.iterdir()) == ["kws.stream.onnx"]
    assert (shipped / "kws.stream.onnx").read_bytes() == b"shipped"
    assert main(args + ["--force", "--speeds", "1,0.9,1.1"]) == 0
    assert (shipped / "kws.stream.onnx").read_bytes() != b"shipped" and (shipped / "kws.onnx").exists()
    from edge import Recognizer

    assert json.loads(_meta(shipped / "kws.onnx")["speeds"]) == [1.0, 0.9, 1.1]
    assert Recognizer.from_onnx(shipped / "kws.onnx").speeds == (1.0, 0.9, 1.1)


def test_export_stores_the_recipes_detection_settings_unless_told_and_says_which(tiny_export, tiny_data,
                                                                                 tmp_path, capsys):
    """No detection flag: the model gets the shipped recipe's settings (kws/recipes/default.toml, the one place
    to change them), and the command says what it stored; a flag changes its own setting only, and a
    --recipe of one's own gives its settings."""
    from kws.recipe import default_export_settings

    _, checkpoint = tiny_export
    shipped = default_export_settings()
    base = ["export", "--checkpoint", str(checkpoint), "--data", str(tiny_data), "--verify-clips", "4"]
    assert main([*base, "--out", str(tmp_path / "plain" / "kws.onnx")]) == 0
    meta = _meta(tmp_path / "plain" / "kws.onnx")
    detection = json.loads(meta["detection"])
    names = ("threshold", "average_ms", "suppression_ms", "peak_ms", "sustained_ms", "sustained_threshold")
    assert {k: detection[k] for k in names} == {k: shipped[k] for k in names}
    assert json.loads(meta["speeds"]) == shipped["speeds"]
    assert json.loads(meta["stream"])["steps"] == shipped["stream_steps"]
    (stored,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stored:")]
    assert f"threshold {shipped['threshold']:g} on a {shipped['average_ms']:g} ms average" in stored
    assert "(from the shipped recipe, kws/recipes/default.toml)" in stored

    assert main([*base, "--out", str(tmp_path / "told" / "kws.onnx"), "--threshold", "0.7", "--speeds", "1"]) == 0
    told = _meta(tmp_path / "told" / "kws.onnx")
    assert json.loads(told["detection"])["threshold"] == 0.7 and json.loads(told["speeds"]) == [1.0]
    assert json.loads(told["detection"])["average_ms"] == shipped["average_ms"]
    (stored,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stored:")]
    assert "threshold 0.7 " in stored and "from --threshold, --speeds; the rest from the shipped recipe" in stored

    recipe = tmp_path / "mine.toml"
    recipe.write_text("[export]\nthreshold = 0.55\nspeeds = [1, 0.95]\n")
    assert main([*base, "--recipe", str(recipe), "--out", str(tmp_path / "changed" / "kws.onnx")]) == 0
    changed = _meta(tmp_path / "changed" / "kws.onnx")
    assert json.loads(changed["detection"])["threshold"] == 0.55 and json.loads(changed["speeds"]) == [1.0, 0.95]
    assert json.loads(changed["detection"])["average_ms"] == shipped["average_ms"]  # not in it: the shipped one
    (stored,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stored:")]
    assert f"(threshold, speeds from recipe {recipe}; the rest from the shipped recipe" in stored


def test_export_bad_paths(tiny_export, tiny_data, tmp_path, capsys):
    _, checkpoint = tiny_export
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.txt"),
                 "--data", str(tiny_data)]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx"),
                 "--data", str(tiny_data)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_detection_settings_that_cannot_work(tiny_export, tiny_data, tmp_path, capsys):
    _, checkpoint = tiny_export
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--data", str(tiny_data), "--average-ms", "0"]) == 2
    assert "average_ms must be more than 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses it before any work
        main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
              "--data", str(tiny_data), "--speeds", "0.9,1.1"])
    assert "include 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_streaming_model_from_another_export_is_refused(tiny_export, tiny_data, tmp_path):
    """A stale or half-replaced pair: the window model of one export beside the streaming model of another."""
    from edge import EdgeError, Recognizer

    report, checkpoint = tiny_export
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "other.pt")
    other = export_checkpoint(tmp_path / "other.pt", tmp_path / "other" / "kws.onnx", tiny_data, verify_clips=8)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(report.window, mixed / "kws.onnx")
    shutil.copy(other.stream, mixed / "kws.stream.onnx")
    with pytest.raises(EdgeError, match="kws.stream.onnx does not belong to kws.onnx"):
        Recognizer.from_onnx(mixed / "kws.onnx")
    shutil.copy(report.stream, mixed / "kws.stream.onnx")
    assert Recognizer.from_onnx(mixed / "kws.onnx").streaming
    # the export's own check tells the pair apart by its numbers: the window model agrees, the stream does not
    model, config, labels = model_from_checkpoint(load_checkpoint(checkpoint))
    waveforms, _ = fixed_examples(load_split(scan(tiny_data), "validation", labels[2:], config), config)
    parity = kws.export.verify(model, config, report.window, other.stream, waveforms[:4])
    assert parity.max_logit_diff < 1e-3 and parity.max_stream_diff > 1e-2 and not parity.ok


def test_atomic_write_flushes_the_file_and_the_rename(tmp_path, monkeypatch):
    import kws.files

    flushed = []
    real = kws.files.os.fsync
    monkeypatch.setattr(kws.files.os, "fsync", lambda fd: (flushed.append(fd), real(fd)))
    kws.files.atomic_write(tmp_path / "f.bin", lambda tmp: tmp.write_bytes(b"data"))
    assert (tmp_path / "f.bin").read_bytes() == b"data" and len(flushed) == 2  # the file, then its folder


def test_the_committed_test_model_is_what_an_export_writes_today(tiny_export):
    """tests/data/tiny, the model the edge tests run on without PyTorch, carries the metadata and streaming
    layout an export of the tone words writes today; when this fails, remake it with tools/make_test_model.py."""
    from conftest import TINY_MODEL

    def metadata(path):
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}

    fresh, committed = metadata(tiny_export[0].window), metadata(TINY_MODEL)
    assert committed.keys() == fresh.keys()
    for key in fresh.keys() - {"weights_id"}:  # the weights differ from one CPU to another, nothing else may
        assert committed[key] == fresh[key], key
    assert metadata(TINY_MODEL.with_name("kws.stream.onnx"))["weights_id"] == committed["weights_id"]
