import pytest
import torch

from kws.config import FeatureConfig, ModelConfig
from kws.model import KeywordLSTM


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("samples", [1000, 8000, 16000, 24000])
def test_shapes_for_any_batch_and_length(batch, samples):
    features = FeatureConfig()
    config = ModelConfig(hidden_size=32)
    model = KeywordLSTM(10, features, config).eval()
    frames = model(torch.zeros(batch, samples))
    assert frames.shape == (batch, features.frames(samples) // config.frame_stack, 10)
    assert model.clip_logits(torch.zeros(batch, samples)).shape == (batch, 10)


@pytest.mark.parametrize("frame_stack, steps", [(1, 97), (2, 48), (3, 32)])
def test_one_second_gives_97_frames_and_one_lstm_step_per_stack(frame_stack, steps):
    """30 ms windows every 10 ms without centring: 97 whole frames in a second, counted by the config and made
    by the MFCC layer alike; the LSTM steps once per `frame_stack` frames, a leftover frame dropped."""
    features = FeatureConfig()
    model = KeywordLSTM(10, features, ModelConfig(hidden_size=8, frame_stack=frame_stack)).eval()
    with torch.no_grad():
        frames = model.features(torch.zeros(1, 16000))
        logits = model(torch.zeros(1, 16000))
    assert features.frames(16000) == frames.shape[1] == 97
    assert logits.shape == (1, steps, 10)


def test_default_model_is_compact():
    assert KeywordLSTM(10, FeatureConfig(), ModelConfig()).parameter_count <= 250_000


def test_unidirectional_frames_ignore_the_future():
    """What lets the same weights stream: frame t depends on audio up to t only."""
    torch.manual_seed(0)
    model = KeywordLSTM(5, FeatureConfig(), ModelConfig(hidden_size=16)).eval()
    audio = 0.1 * torch.randn(1, 16000)
    changed = audio.clone()
    changed[:, 8000:] = 0.1 * torch.randn(1, 8000)
    with torch.no_grad():
        a, b = model(audio), model(changed)
    safe = FeatureConfig().frames(8000) // ModelConfig().frame_stack  # steps that end before sample 8000
    assert torch.allclose(a[:, :safe], b[:, :safe], atol=1e-6)
    assert not torch.allclose(a[:, safe:], b[:, safe:])
