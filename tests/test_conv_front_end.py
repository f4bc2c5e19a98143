"""kws train --front-end log-mel --conv-channels N: causal convolutions over log-mel bands before the LSTM,
exported, streamed and scored exactly as the window model computes them."""

import json

import numpy as np
import onnx
import pytest
import torch

from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.config import Config, FeatureConfig, ModelConfig, TrainConfig
from kws.data import load_split, scan
from kws.errors import KwsError
from kws.eval_scoring import run_model
from kws.features import MfccFrontEnd
from kws.model import KeywordLSTM
from kws.train_selection import build_selection_stream, model_step_scores


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory, tiny_data):
    from kws.export import export_checkpoint
    from kws.train import train

    root = tmp_path_factory.mktemp("conv_export")
    config = Config(features=FeatureConfig(front_end="log-mel"),
                    model=ModelConfig(hidden_size=24, dropout=0.0, frame_stack=2, conv_channels=4),
                    train=TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, warmup_epochs=0.5))
    train(tiny_data, root / "run", config, progress=False, echo=lambda line: None)
    report = export_checkpoint(root / "run" / "best.pt", root / "models" / "kws.onnx", tiny_data, int8=True)
    return report, root / "run" / "best.pt"


def test_log_mel_bands_are_what_the_mfcc_is_computed_from():
    audio = torch.randn(2, 16000) * 0.1
    mfcc = MfccFrontEnd(FeatureConfig())(audio)
    bands = MfccFrontEnd(FeatureConfig(front_end="log-mel"))(audio)
    assert bands.shape == (2, 97, 40) and mfcc.shape == (2, 97, 20)
    dct = MfccFrontEnd(FeatureConfig()).mfcc.dct_mat  # [n_mels, n_mfcc]
    assert torch.allclose(bands @ dct, mfcc, atol=1e-4)


def test_convolutions_keep_one_step_per_stack_of_frames_and_read_no_future_audio():
    features = FeatureConfig(front_end="log-mel")
    model = KeywordLSTM(10, features, ModelConfig(frame_stack=2, conv_channels=10)).eval()
    audio = torch.randn(1, 16000) * 0.1
    later = audio.clone()
    later[0, 8000:] = torch.randn(8000)  # change only the second half
    with torch.no_grad():
        steps, changed = model(audio)[0], model(later)[0]
    assert steps.shape == (48, 10)
    step_s = 2 * features.hop_samples / features.sample_rate
    untouched = int(0.5 / step_s) - 1  # steps that end before 0.5 s (their last frame ends by then)
    assert torch.equal(steps[:untouched - 1], changed[:untouched - 1])
    assert not torch.equal(steps[untouched + 1:], changed[untouched + 1:])
    assert model.parameter_count < 250_000


def test_conv_model_exports_streams_and_quantizes_as_pytorch_computes_it(conv_export):
    report, _ = conv_export
    assert report.parity.ok and report.parity.argmax_mismatches == 0 and report.parity.stream_clips > 0
    assert report.int8_parity.ok
    stream = json.loads({p.key: p.value for p in onnx.load(str(report.stream)).metadata_props}["stream"])
    assert stream["context_samples"] == 352 + 3 * 160  # the FFT's overlap and the convolutions' reach
    assert stream["clip_steps"] == 48
    assert {n.op_type for n in onnx.load(str(report.window)).graph.node} >= {"Conv", "STFT"}


def test_runtime_scores_a_stream_as_the_pytorch_model_does(conv_export, tiny_data):
    report, checkpoint = conv_export
    model, config, labels = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    commands = load_split(scan(tiny_data, config.data), "validation", labels[2:], config)
    other = np.random.default_rng(1).normal(0, 0.05, (4, config.features.clip_samples)).astype(np.float32)
    speech = np.random.default_rng(2).normal(0, 0.05, 5 * config.features.sample_rate).astype(np.float32)
    stream = build_selection_stream(commands, labels, config, other, speech, seed=3, minutes=0.5)
    runtime = run_model(report.window, stream.audio.numpy(), progress=False)
    ours = model_step_scores(model, stream, labels, config)
    assert np.allclose(ours.times_s, runtime.times_s)
    assert np.abs(ours.probabilities - runtime.probabilities).max() < 1e-4


@pytest.mark.parametrize("make", [
    lambda: FeatureConfig(front_end="spectrogram"),
    lambda: ModelConfig(conv_channels=-1),
    lambda: ModelConfig(conv_channels=8, bidirectional=True),
])
def test_settings_that_cannot_work_are_refused(make):
    with pytest.raises(KwsError):
        make()


def test_too_few_bands_for_the_kernels_is_a_clear_error():
    with pytest.raises(KwsError, match="at least 9 values"):
        KeywordLSTM(10, FeatureConfig(n_mfcc=8), ModelConfig(conv_channels=4))
