"""`kws train --teacher`: a model learns to follow another model's scores (e.g. an ensemble's)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.cli import main
from kws.config import Config, ModelConfig, TrainConfig
from kws.data import fixed_examples, load_split, resolve_keywords, scan
from kws.errors import KwsError
from kws.model import clip_steps
from kws.train import _distillation, train
from kws.train_sequences import window_max

from conftest import make_dataset, tone_stream


def _quiet(line):
    pass


def _with(config: Config, **train_settings) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train_settings))


def _divergence(teacher, student, audio: torch.Tensor, window: int | None = None) -> float:
    """Mean KL(teacher || student) on clips (window None) or on a stream's steps as the runtime reads them."""
    with torch.no_grad():
        if window is None:
            t, s = teacher.clip_logits(audio), student.clip_logits(audio)
        else:
            t, s = window_max(teacher(audio), window), window_max(student(audio), window)
    return float(F.kl_div(s.log_softmax(-1), t.log_softmax(-1), reduction="none", log_target=True).sum(-1).mean())


def test_the_divergence_is_zero_on_the_teachers_own_scores_and_grows_away_from_them(tiny_config):
    logits = torch.randn(4, 7, 5)
    assert float(_distillation(logits, logits, tiny_config)) == pytest.approx(0.0, abs=1e-6)
    near, far = logits + 0.1 * torch.randn(4, 7, 5), logits + torch.randn(4, 7, 5)
    assert 0 < float(_distillation(near, logits, tiny_config)) < float(_distillation(far, logits, tiny_config))
    # temperature squared keeps the size of the gradient: a small difference costs about the same at T = 2
    hot = _with(tiny_config, distill_temperature=2.0)
    assert float(_distillation(near, logits, hot)) == pytest.approx(float(_distillation(near, logits, tiny_config)),
                                                                    rel=0.5)


@pytest.fixture(scope="module")
def contrary_teacher(tmp_path_factory):
    """A model that calls the "yes" tone "no" and the "no" tone "yes": whatever a run learns of that, it learns
    from the teacher, not from its data."""
    root = tmp_path_factory.mktemp("contrary")
    swapped = make_dataset(root / "data")
    (swapped / "yes").rename(swapped / "was_yes")
    (swapped / "no").rename(swapped / "yes")
    (swapped / "was_yes").rename(swapped / "no")
    config = Config(model=ModelConfig(hidden_size=32, dropout=0.0),
                    train=TrainConfig(epochs=12, batch_size=16, learning_rate=1e-2, warmup_epochs=0.5))
    train(swapped, root / "run", config, progress=False, echo=_quiet)
    return root / "run" / "best.pt"


@pytest.mark.parametrize("sequences", [False, True])
def test_a_taught_model_follows_its_teachers_scores(tiny_data, tiny_config, contrary_teacher, tmp_path, sequences):
    """Same seed, data and epochs; with the teacher the model's scores end closer to the teacher's, on the
    validation clips and on a stream of words (steps read as the runtime reads them)."""
    config = _with(tiny_config, epochs=5, sequence_ms=2500 if sequences else 0)
    train(tiny_data, tmp_path / "alone", config, progress=False, echo=_quiet)
    lines = []
    train(tiny_data, tmp_path / "taught", _with(config, distill_weight=2.0), progress=False, echo=lines.append,
          teacher=contrary_teacher)
    assert any(line.startswith(f"teacher: {contrary_teacher}") for line in lines)

    teacher, teacher_config, _ = model_from_checkpoint(load_checkpoint(contrary_teacher))
    alone, taught = (model_from_checkpoint(load_checkpoint(tmp_path / name / "last.pt"))[0]
                     for name in ("alone", "taught"))
    index = scan(tiny_data, teacher_config.data)
    keywords = resolve_keywords(teacher_config.data.keywords, index.words)
    clips, _ = fixed_examples(load_split(index, "validation", keywords, teacher_config), teacher_config)
    assert _divergence(teacher, taught, clips) < 0.8 * _divergence(teacher, alone, clips)
    stream = torch.from_numpy(tone_stream([("yes", 0.5), ("happy", 1.7), ("stop", 3.0), ("no", 4.4)], 6.0)[0])[None]
    window = clip_steps(teacher_config.features, teacher_config.model)
    assert _divergence(teacher, taught, stream, window) < 0.8 * _divergence(teacher, alone, stream, window)


def test_a_teacher_must_hear_the_same_words_in_the_same_steps(tiny_data, tiny_config, contrary_teacher, tmp_path,
                                                              capsys):
    teacher_path = contrary_teacher
    taught = _with(tiny_config, distill_weight=1.0)
    with pytest.raises(KwsError, match="go together"):
        train(tiny_data, tmp_path / "no_weight", tiny_config, progress=False, echo=_quiet, teacher=teacher_path)
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "cli"), "--teacher", str(teacher_path)]) == 2
    assert "--teacher and --distill-weight go together" in capsys.readouterr().err
    with pytest.raises(KwsError, match="go together"):
        train(tiny_data, tmp_path / "no_teacher", taught, progress=False, echo=_quiet)
    fewer = dataclasses.replace(taught, data=dataclasses.replace(taught.data, keywords=("yes", "no")))
    with pytest.raises(KwsError, match="knows"):
        train(tiny_data, tmp_path / "fewer", fewer, progress=False, echo=_quiet, teacher=teacher_path)
    stacked = dataclasses.replace(taught, model=dataclasses.replace(taught.model, frame_stack=2))
    with pytest.raises(KwsError, match="model.frame_stack"):
        train(tiny_data, tmp_path / "stacked", stacked, progress=False, echo=_quiet, teacher=teacher_path)


def test_a_run_resumes_only_with_its_own_teacher(tiny_data, tiny_config, contrary_teacher, tmp_path):
    teacher_path = contrary_teacher
    config = _with(tiny_config, epochs=1, distill_weight=1.0)
    train(tiny_data, tmp_path / "run", config, progress=False, echo=_quiet, teacher=teacher_path)
    other = tmp_path / "other.pt"
    other.write_bytes(teacher_path.read_bytes())
    with pytest.raises(KwsError, match="same one"):
        train(tiny_data, tmp_path / "run", config, resume=True, progress=False, echo=_quiet, teacher=other)
    train(tiny_data, tmp_path / "run", config, resume=True, progress=False, echo=_quiet, teacher=teacher_path)
