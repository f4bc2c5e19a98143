"""`kws train`: fit a KeywordLSTM on a Speech Commands-style folder, validating after every epoch.

Each epoch's randomness comes from (seed, epoch) alone and every epoch ends with an atomic checkpoint,
so a run stopped at any point and resumed gives the same model as one that was never stopped, on the same
arithmetic (`arithmetic()`): the same seed on another CPU or library version gives another model.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchaudio
from tqdm import tqdm

from kws.augment import spectral_features
from kws.batches import Prepared, prepared_batches
from kws.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from kws.config import Config
from kws.data import (DatasetIndex, SplitAudio, draw_examples, epoch_size, fixed_examples, labels_for, load_split,
                      resolve_keywords, scan)
from kws.distributed import World, join, leave, pick_device, pick_workers
from kws.errors import KwsError
from kws.files import atomic_write, remove_stale_temporaries
from kws.evaluate import EvalReport, predict
from kws.model import KeywordLSTM, clip_logits_from_frames, clip_steps
from kws.train_sequences import FIRST_KEYWORD, sequence_loss, window_max

LAST, BEST = "last.pt", "best.pt"


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_accuracy: float
    epochs_done: int
    parameter_count: int
    skipped_files: int
    report: EvalReport  # validation report of the best epoch


def _epoch_generators(config: Config, epoch: int, world: World) -> tuple[torch.Generator, torch.Generator, int]:
    """(the epoch's draw of examples, the same in every process; this process's augmentation and dropout;
    the seed of that generator, from which worker processes seed each batch). A process alone uses one
    generator for both, as runs before torchrun did."""
    seed = config.train.seed * 1_000_003 + epoch
    draw = torch.Generator().manual_seed(seed)
    own = seed if world.size == 1 else seed + 7_919 * (world.rank + 1)
    torch.manual_seed(own)  # dropout draws from the global generator
    return draw, draw if world.size == 1 else torch.Generator().manual_seed(own), own


def _schedule(config: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero over the remaining steps (a factor on the base rate)."""
    warmup = max(1, round(config.train.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, config.train.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    return factor


@torch.no_grad()
def _normalisation(model: KeywordLSTM, audio: SplitAudio) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coefficient mean and std of the training clips' MFCCs."""
    frames = torch.cat([model.front_end(batch).flatten(0, 1) for batch in audio.waveforms.split(512)])
    return frames.mean(dim=0), frames.std(dim=0)


def _clip_loss(model, batch: Prepared, config: Config, generator):
    """Loss and (correct, counted) on single aligned clips."""
    features = spectral_features(model, batch.audio, config.augment, config.features, generator)
    logits = clip_logits_from_frames(model.classify_frames(features), config.model).float()
    loss = F.cross_entropy(logits, batch.labels, label_smoothing=config.train.label_smoothing)
    return loss, int((logits.argmax(dim=1) == batch.labels).sum()), len(batch.labels)


def _sequence_loss(model, batch: Prepared, config: Config, generator):
    """Loss and (correct, counted) on sequences; steps with one allowed label are counted."""
    window = clip_steps(config.features, config.model)
    features = spectral_features(model, batch.audio, config.augment, config.features, generator)
    logits = window_max(model.classify_frames(features), window).float()
    allowed = batch.allowed[:, : logits.shape[1]]
    loss = sequence_loss(logits, allowed, config.train.label_smoothing)
    if (batch.labels >= 0).any():  # sequences that open with a whole clip also learn to classify it
        loss = loss + F.cross_entropy(logits[:, window - 1], batch.labels, label_smoothing=config.train.label_smoothing)
    single = allowed.sum(dim=2) == 1
    correct = allowed.gather(2, logits.argmax(dim=2, keepdim=True)).squeeze(2) & single
    return loss, int(correct.sum()), int(single.sum())


class _Step(torch.nn.Module):
    """One training step's loss as a module's forward, so that DistributedDataParallel sees every use of the
    weights (the steps call the model's parts, not its forward)."""

    def __init__(self, model: KeywordLSTM, config: Config, device: torch.device):
        super().__init__()
        self.model, self._config, self._device = model, config, device
        self._loss = _sequence_loss if config.train.sequence_ms else _clip_loss

    def forward(self, batch: Prepared, generator):
        on_device = Prepared(*(None if t is None else t.to(self._device, non_blocking=True) for t in batch))
        with torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self._device.type == "cuda"):
            return self._loss(self.model, on_device, self._config, generator)


def _train_epoch(step: torch.nn.Module, optimizer, scheduler, audio: SplitAudio, config: Config, epoch: int,
                 progress: bool, world: World, device: torch.device, workers: int):
    """`step`: a _Step, wrapped in DistributedDataParallel under torchrun. Each process trains on its share
    of each batch (every world.size-th example); a last batch too small to share is left out by all."""
    draw, generator, seed = _epoch_generators(config, epoch, world)
    examples = draw_examples(audio, config.data, draw)
    batches = [batch for batch in examples.split(config.train.batch_size) if len(batch) >= world.size]
    shares = [batch[world.rank::world.size] for batch in batches]
    step.train()
    loss_sum, correct, seen, trained_on = 0.0, 0, 0, 0
    prepared = prepared_batches(shares, audio, config, generator, workers, seed, pin=device.type == "cuda")
    bar = tqdm(zip(batches, shares, prepared), total=len(batches), desc=f"epoch {epoch + 1}/{config.train.epochs}",
               leave=False, disable=not progress, unit="batch")
    for batch, share, (ready, generator) in bar:
        loss, batch_correct, counted = step(ready, generator)
        optimizer.zero_grad(set_to_none=True)
        # DDP averages the processes' gradients; weighted by share, that is the whole batch's mean (x1 alone)
        (loss * (world.size * len(share) / len(batch))).backward()
        torch.nn.utils.clip_grad_norm_(step.parameters(), config.train.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * counted
        correct += batch_correct
        seen += counted
        trained_on += len(share)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
    loss_sum, correct, seen, trained_on = world.summed(loss_sum, correct, seen, trained_on)
    return loss_sum / seen, correct / seen, int(trained_on)


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write(run_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(history, indent=2)))
    text = io.StringIO()
    columns = dict.fromkeys(key for row in history for key in row)  # a resumed old run's rows lack newer figures
    writer = csv.DictWriter(text, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / "metrics.csv", lambda tmp: tmp.write_text(text.getvalue()))


def arithmetic(device: torch.device = torch.device("cpu"), world: World = World(), workers: int = 0) -> dict[str, str]:
    """What decides the rounding of every sum in training here. Two runs of one seed that differ in any of
    these differ in their weights (one epoch on AVX2 kernels instead of AVX-512 ones: by 4e-7), and a whole
    run grows that into another model, as another seed would be."""
    here = {"torch": str(torch.__version__), "torchaudio": str(torchaudio.__version__),
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "threads": str(torch.get_num_threads()),
            "machine": platform.machine()}
    if device.type == "cuda":
        here["device"] = torch.cuda.get_device_name(device)
    if world.size > 1:  # each process sums its share of a batch, then the shares are averaged
        here["processes"] = str(world.size)
    if workers:  # each batch augmented from a seed of its own, not from the epoch's one generator
        here["batches"] = "seeded one by one (worker processes)"
    return here


def _describe(arithmetic: dict[str, str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in arithmetic.items())


def _start_state(run_dir: Path, config: Config, resume: bool) -> dict | None:
    """The checkpoint to continue from, or None for a fresh run. Refuses to mix runs."""
    last = run_dir / LAST
    if not resume:
        if last.exists():
            raise KwsError(f"{run_dir} already holds a training run; add --resume to continue it, "
                           "or choose another --out")
        return None
    if not last.exists():
        raise KwsError(f"nothing to resume: {last} does not exist")
    state = load_checkpoint(last)
    stored = Config.from_dict(state["config"])
    changed = stored.differences(config)
    if changed:
        raise KwsError(f"{last} was trained with another config ({', '.join(changed)} differ); "
                       "resume with the same settings or start a new run with another --out")
    return state


def _initial_weights(path: Path, config: Config, labels: tuple[str, ...], echo) -> dict[str, torch.Tensor]:
    """A trained model's weights to start from, checked to be the same network. With other words than this
    run's (a user's own words started from the shipped model), everything but the head carries over: the
    front end and the LSTM that already know speech; the head keeps the rows of the labels both know and
    starts the others fresh. This run's dropout applies to the weights."""
    start, start_config, start_labels = model_from_checkpoint(load_checkpoint(path), path)
    changed = [setting for setting in start_config.differences(config)
               if setting.startswith(("model.", "features.")) and setting != "model.dropout"]
    if changed:
        raise KwsError(f"--init-from {path}: {', '.join(changed)} differ; start from the same network "
                       "(or without --init-from)")
    weights = start.state_dict()
    if start_labels == labels:
        echo(f"starting from the weights in {path}")
        return weights
    fresh = KeywordLSTM(len(labels), config.features, config.model).head.state_dict()
    for row, label in enumerate(labels):
        if label in start_labels:
            for name in ("weight", "bias"):
                fresh[name][row] = weights[f"head.{name}"][start_labels.index(label)]
    new = [label for label in labels if label not in start_labels]
    echo(f"starting from the weights in {path}" + (f", all but the head's rows for {', '.join(new)}, which start "
                                                    "fresh" if new else ", the head's rows in this run's order"))
    return weights | {f"head.{name}": value for name, value in fresh.items()}


def _hold_out_on_off_fold(config: Config, negatives: tuple, echo: Callable[[str], None]) -> Config:
    """`config` with the speakers of its on/off fold as held_out_speakers (kws.other_speech.on_off_folds)."""
    from kws.other_speech import ON_OFF_FOLDS, on_off_folds, scan_other_speech

    fold = config.data.on_off_fold
    if not negatives:
        raise KwsError("--on-off-fold needs --negatives: the other speech whose on/off speakers it holds out")
    if fold >= ON_OFF_FOLDS:
        raise KwsError(f"--on-off-fold must lie in 0..{ON_OFF_FOLDS - 1}, not {fold}")
    plain = dataclasses.replace(config.data, on_off_fold=-1, held_out_speakers=())
    recordings = tuple(r for folder in negatives for r in scan_other_speech(folder, plain))
    held = on_off_folds(recordings)[fold]
    if not held:
        raise KwsError(f"{', '.join(map(str, negatives))} holds no recordings of 'on' or 'off' to hold out")
    clips = sum(r.speaker in held and r.word in ("on", "off") for r in recordings)
    echo(f"on/off fold {fold} of {ON_OFF_FOLDS}: {len(held)} speakers held out ({clips} on/off clips); no clip "
         "of theirs is trained on, commands included")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, held_out_speakers=held))


@dataclass
class _Data:
    """What a run trains and validates on."""

    config: Config  # with the words and held-out speakers filled in
    labels: tuple[str, ...]
    train: SplitAudio
    val_waveforms: torch.Tensor
    val_labels: torch.Tensor
    val_other: torch.Tensor | None  # validation other speech: clips that should be called silence or unknown
    skipped: int


def _resolve(config: Config, index: DatasetIndex, negatives: tuple[Path, ...], echo) -> Config:
    """`config` with what the data decides: the words, and the speakers held out of training."""
    keywords = resolve_keywords(config.data.keywords, index.words)
    if not index.clips_of("validation"):
        raise KwsError(f"{index.root} has no validation clips: add validation_list.txt or more speakers")
    if config.train.select_by == "open-set" and not negatives:
        raise KwsError("--select-by open-set needs --negatives: the other speech whose validation part it rejects")
    # Store the words themselves, so the checkpoint and the exported model say which words they know.
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, keywords=keywords))
    return _hold_out_on_off_fold(config, negatives, echo) if config.data.on_off_fold >= 0 else config


def _load_data(index: DatasetIndex, config: Config, negatives: tuple[Path, ...], echo) -> _Data:
    keywords = config.data.keywords
    train_audio = load_split(index, "training", keywords, config)
    val_other = None
    if negatives:
        from kws.other_speech import add_other_speech

        train_audio, other = add_other_speech(train_audio, negatives, config, echo)
        if len(other.waveforms):
            val_other = torch.from_numpy(other.waveforms)
        elif config.train.select_by == "open-set":
            echo(f"no validation speakers in {', '.join(map(str, negatives))}: best.pt is chosen by clip accuracy alone")
    val_audio = load_split(index, "validation", keywords, config)
    val_waveforms, val_labels = fixed_examples(val_audio, config)
    labels = labels_for(keywords)
    skipped = len(train_audio.skipped) + len(val_audio.skipped)
    echo(f"data: {len(train_audio.labels)} training and {len(val_audio.labels)} validation clips, "
         f"{len(train_audio.noise) / config.features.sample_rate:.0f} s of training noise, "
         f"{skipped} unreadable file(s) skipped; labels: {', '.join(labels)}")
    return _Data(config, labels, train_audio, val_waveforms, val_labels, val_other, skipped)


def _build_model(data: _Data, state: dict | None, run_dir: Path, init_from: Path | None, echo) -> KeywordLSTM:
    """The last epoch's model when resuming; else fresh weights from the seed, or those of `init_from`."""
    config = data.config
    if state is not None:
        if tuple(state["labels"]) != data.labels:
            raise KwsError(f"{run_dir / LAST} has labels {state['labels']}, but this data gives {list(data.labels)}")
        return model_from_checkpoint(state, run_dir / LAST)[0]
    torch.manual_seed(config.train.seed)  # the initial weights, too, come from the seed alone
    model = KeywordLSTM(len(data.labels), config.features, config.model)
    if init_from is not None:
        model.load_state_dict(_initial_weights(init_from, config, data.labels, echo))
    else:
        model.set_normalisation(*_normalisation(model, data.train))
    return model


def _validate(model: KeywordLSTM, data: _Data) -> dict:
    """This epoch's validation figures; `score` is the one that picks best.pt."""
    logits = predict(model, data.val_waveforms)
    accuracy = float((logits.argmax(dim=1) == data.val_labels).float().mean())
    row = {"val_loss": round(float(F.cross_entropy(logits, data.val_labels)), 5), "val_accuracy": round(accuracy, 5)}
    score = accuracy
    if data.val_other is not None:
        rejected = float((predict(model, data.val_other).argmax(dim=1) < FIRST_KEYWORD).float().mean())
        row["val_other_rejected"] = round(rejected, 5)
        if data.config.train.select_by == "open-set":
            score = (accuracy + rejected) / 2
    return row | {"score": score, "accuracy": accuracy}


def train(data_dir: str | Path, run_dir: str | Path, config: Config, resume: bool = False,
          progress: bool = True, echo: Callable[[str], None] | None = None,
          init_from: str | Path | None = None, negatives: tuple[str | Path, ...] = (),
          device: str = "auto", workers: int | None = None) -> TrainResult:
    """Train from scratch, from the weights in `init_from` (fine-tuning), or on from `run_dir/last.pt`.
    `negatives`: folders of other speech (kws.other_speech) whose training parts are added as unknown.
    `device`: auto, cpu or cuda (kws.distributed); under torchrun, each process trains its share.
    `workers`: processes that prepare the batches (kws.distributed.pick_workers; None: 0 on the CPU)."""
    where = pick_device(device)
    world = join(where)
    try:
        return _train(Path(data_dir), Path(run_dir), config, resume, progress, echo, init_from,
                      tuple(map(Path, negatives)), where, world, pick_workers(workers, where))
    finally:
        leave(world)


def _train(data_dir: Path, run_dir: Path, config: Config, resume: bool, progress: bool, echo, init_from,
           negatives: tuple[Path, ...], device: torch.device, world: World, workers: int) -> TrainResult:
    echo = echo or (lambda line: print(line, flush=True))  # flushed: logs are often piped to a file
    if not world.main:  # rank 0 speaks and writes for all
        echo, progress = (lambda line: None), False
    started = time.monotonic()
    index = scan(data_dir, config.data)
    config = _resolve(config, index, negatives, echo)
    state = _start_state(run_dir, config, resume)
    if world.main:  # a run killed while writing leaves a temporary beside the file it was replacing
        for name in (LAST, BEST, "metrics.json", "metrics.csv", "config.json"):
            remove_stale_temporaries(run_dir / name)
    data = _load_data(index, config, negatives, echo)
    model = _build_model(data, state, run_dir, None if init_from is None else Path(init_from), echo).to(device)
    size_kb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1024
    echo(f"model: KeywordLSTM, {model.parameter_count:,} parameters ({size_kb:.0f} KiB float32)")
    here = arithmetic(device, world, workers)
    echo(f"arithmetic: {_describe(here)} (a run elsewhere gives other weights)")
    step = _Step(model, config, device)
    if world.size > 1:
        step = torch.nn.parallel.DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)

    steps_per_epoch = math.ceil(epoch_size(data.train, config.data) / config.train.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate,
                                  weight_decay=config.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps_per_epoch))
    # best: the selection figure of the best epoch so far; best_accuracy: that epoch's validation accuracy
    history, best, best_accuracy, start_epoch = [], -1.0, -1.0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        best_accuracy = float(state["best_accuracy"])
        best = float(state.get("best_score", best_accuracy))
        echo(f"resuming after epoch {start_epoch} (best {config.train.select_by} figure so far {100 * best:.2f}%)")
        if state.get("arithmetic", here) != here:
            echo(f"warning: epochs 1-{start_epoch} ran on other arithmetic ({_describe(state['arithmetic'])}); "
                 "the rest will not give the weights an uninterrupted run would")

    for epoch in range(start_epoch, config.train.epochs):
        epoch_start = time.monotonic()
        train_loss, train_acc, examples = _train_epoch(step, optimizer, scheduler, data.train, config, epoch,
                                                       progress, world, device, workers)
        train_seconds = time.monotonic() - epoch_start
        figures = _validate(model, data)
        score, val_acc = figures.pop("score"), figures.pop("accuracy")
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_accuracy": round(train_acc, 5),
                        **figures, "learning_rate": scheduler.get_last_lr()[0],
                        "seconds": round(time.monotonic() - epoch_start, 1),
                        "examples_per_second": round(examples / train_seconds, 1)})  # training alone, all processes
        improved = score > best
        if improved:
            best, best_accuracy = score, val_acc
        checkpoint = {"config": config.to_dict(), "labels": list(data.labels), "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "epoch": epoch + 1, "best_score": best, "best_accuracy": best_accuracy, "history": history,
                      "parameter_count": model.parameter_count, "arithmetic": here}
        if world.main:
            if improved:
                save_checkpoint(run_dir / BEST, checkpoint)
            save_checkpoint(run_dir / LAST, checkpoint)  # last, so a resume never lacks the best it recorded
            _write_metrics(run_dir, history)
        other = (f"  other speech rejected {100 * figures['val_other_rejected']:5.2f}%"
                 if "val_other_rejected" in figures else "")
        echo(f"epoch {epoch + 1:>3}/{config.train.epochs}  loss {train_loss:.3f}  acc {100 * train_acc:5.2f}%  |  "
             f"val loss {figures['val_loss']:.3f}  acc {100 * val_acc:5.2f}%{other}{'  *' if improved else ''}  "
             f"({history[-1]['seconds']:.0f} s)")

    if world.main:
        atomic_write(run_dir / "config.json", lambda tmp: tmp.write_text(json.dumps(config.to_dict(), indent=2)))
    world.wait_for_all()  # best.pt is whole before any process reads it
    best_model, _, _ = model_from_checkpoint(load_checkpoint(run_dir / BEST), run_dir / BEST)
    report = EvalReport.from_predictions(predict(best_model, data.val_waveforms).argmax(dim=1), data.val_labels,
                                         data.labels)
    echo(f"done in {time.monotonic() - started:.0f} s; best validation accuracy {100 * best_accuracy:.2f}% "
         f"({run_dir / BEST}, chosen by {config.train.select_by})\n{report.table()}")
    return TrainResult(run_dir, best_accuracy, config.train.epochs, model.parameter_count, data.skipped, report)
