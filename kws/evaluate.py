"""Accuracy, per-class precision/recall and the confusion matrix of a model on one split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.files import atomic_write
from kws.config import Config
from kws.data import SPLITS, fixed_examples, load_split, scan
from kws.errors import KwsError
from kws.model import KeywordLSTM


@torch.no_grad()
def predict(model: KeywordLSTM, waveforms: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[clips, samples] -> clip logits [clips, n_labels], in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model.clip_logits(batch.to(device)).cpu() for batch in waveforms.split(batch_size)])
    model.train(was_training)
    return logits


@dataclass(frozen=True)
class EvalReport:
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # [true label][predicted label] counts

    @classmethod
    def from_predictions(cls, predicted: torch.Tensor, target: torch.Tensor, labels: tuple[str, ...]) -> EvalReport:
        n = len(labels)
        counts = torch.bincount(target * n + predicted, minlength=n * n).reshape(n, n)
        return cls(tuple(labels), tuple(tuple(int(v) for v in row) for row in counts))

    @property
    def total(self) -> int:
        return sum(map(sum, self.confusion))

    @property
    def accuracy(self) -> float:
        return sum(self.confusion[i][i] for i in range(len(self.labels))) / max(1, self.total)

    def precision(self, i: int) -> float:
        predicted = sum(row[i] for row in self.confusion)
        return self.confusion[i][i] / predicted if predicted else 0.0

    def recall(self, i: int) -> float:
        actual = sum(self.confusion[i])
        return self.confusion[i][i] / actual if actual else 0.0

    def table(self) -> str:
        width = max(len(label) for label in self.labels)
        lines = [f"{'label':<{width}}  {'clips':>6}  {'precision':>9}  {'recall':>6}"]
        for i, label in enumerate(self.labels):
            lines.append(f"{label:<{width}}  {sum(self.confusion[i]):>6}  "
                         f"{100 * self.precision(i):>8.1f}%  {100 * self.recall(i):>5.1f}%")
        lines.append(f"accuracy {100 * self.accuracy:.2f}% on {self.total} clips")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "clips": self.total,
            "labels": list(self.labels),
            "per_class": {label: {"precision": self.precision(i), "recall": self.recall(i),
                                  "clips": sum(self.confusion[i])} for i, label in enumerate(self.labels)},
            "confusion": [list(row) for row in self.confusion],
        }


def save_confusion_png(report: EvalReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    n = len(report.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n))
    matrix = torch.tensor(report.confusion, dtype=torch.float32)
    shares = matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)  # each row sums to 1: recall on the diagonal
    ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if report.confusion[i][j]:
                ax.text(j, i, report.confusion[i][j], ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), report.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {100 * report.accuracy:.2f}%")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def load_predictor(path: Path):
    """(waveforms -> logits, config, labels) for a .pt checkpoint or an exported .onnx window model."""
    if path.suffix != ".onnx":
        model, config, labels = model_from_checkpoint(load_checkpoint(path), path)
        return (lambda waveforms: predict(model, waveforms)), config, labels
    from kws.export import onnx_session, run_window

    if not path.is_file():
        raise KwsError(f"model {path} does not exist")
    try:
        session = onnx_session(path)
        meta = session.get_modelmeta().custom_metadata_map
        config, labels = Config.from_dict(json.loads(meta["config"])), tuple(json.loads(meta["labels"]))
    except KwsError:
        raise
    except Exception as error:
        raise KwsError(f"{path} is not a kws ONNX model ({str(error).splitlines()[0][:200]})") from None
    return (lambda waveforms: torch.from_numpy(run_window(session, waveforms.numpy()))), config, labels


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "validation",
                        out_dir: str | Path | None = None) -> tuple[EvalReport, Path]:
    """Evaluate a checkpoint on a split; writes eval_<split>.json and confusion_<split>.png to out_dir
    (default: the checkpoint's folder). Returns the report and the picture's path."""
    if split not in SPLITS:
        raise KwsError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    predict_fn, config, labels = load_predictor(Path(checkpoint))
    index = scan(data_dir, config.data)
    missing = [w for w in labels[2:] if w not in index.words]
    if missing:
        raise KwsError(f"the checkpoint's keyword(s) {', '.join(missing)} have no folder in {data_dir}")
    if not index.clips_of(split):
        raise KwsError(f"{data_dir} has no clips in the {split} split")
    audio = load_split(index, split, labels[2:], config)
    waveforms, targets = fixed_examples(audio, config)
    report = EvalReport.from_predictions(predict_fn(waveforms).argmax(dim=1), targets, labels)
    out = Path(out_dir) if out_dir else Path(checkpoint).parent
    picture = out / f"confusion_{split}.png"
    save_confusion_png(report, picture, f"{Path(checkpoint).name} on {split}")
    result = {"checkpoint": str(checkpoint), "split": split, "skipped_files": audio.skipped, **report.to_dict()}
    atomic_write(out / f"eval_{split}.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2)))
    return report, picture
