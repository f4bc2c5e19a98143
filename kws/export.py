"""`kws export`: a checkpoint -> one ONNX window model plus its streaming twin, verified with onnxruntime.

Window model (the contract other programs rely on):
    audio  float32 [batch, clip_samples] PCM in [-1, 1]  ->  logits float32 [batch, n_labels]
Streaming model (same weights, O(chunk) per call):
    audio  float32 [1, context + steps * step_samples], h, c float32 [layers, 1, hidden]
    ->  logits float32 [1, steps, n_labels], h_out, c_out
`context` is one FFT frame minus one hop: the samples the first new MFCC frame needs from before the chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import kws
from edge.runtime import StreamScorer
from kws.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from kws.files import atomic_write, fsync
from kws.config import Config
from kws.errors import KwsError
from kws.model import KeywordLSTM, clip_logits_from_frames, clip_steps

TOLERANCE = 1e-3
# Dynamic int8 quantization moves logits by up to ~0.3 on the shipped model (measured on 400 validation
# clips); a broken quantization moves them by whole units and flips labels.
INT8_TOLERANCE = 1.0
INT8_MISMATCH_SHARE = 0.01
STREAM_SUFFIX = ".stream.onnx"


@dataclass(frozen=True)
class StreamLayout:
    """Sample counts of one streaming call, derived from the feature and model settings."""

    context_samples: int  # carried over from the previous call
    step_samples: int  # new audio per LSTM step (frame_stack hops)
    steps: int  # LSTM steps per call

    @classmethod
    def of(cls, config: Config, steps: int) -> StreamLayout:
        f = config.features
        context = f.fft_samples - f.hop_samples
        return cls(context, f.hop_samples * config.model.frame_stack, steps)

    @property
    def chunk_samples(self) -> int:
        return self.context_samples + self.steps * self.step_samples


class WindowGraph(nn.Module):
    def __init__(self, model: KeywordLSTM):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return clip_logits_from_frames(self.model(audio), self.model.config)


class StreamGraph(nn.Module):
    def __init__(self, model: KeywordLSTM):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        return self.model.stream(audio, h, c)


def state_shape_of(config: Config) -> tuple[int, int, int]:
    """The streaming model's h and c: [layers, 1, hidden]."""
    return config.model.num_layers, 1, config.model.hidden_size


def weights_id(model: KeywordLSTM) -> str:
    """A hash of the weights: written into both files of an export, so the runtime can tell a window model
    and a streaming model from different exports apart."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def metadata(config: Config, labels: tuple[str, ...], model: KeywordLSTM, layout: StreamLayout,
             stream_file: str, detection: dict | None = None, speeds: tuple[float, ...] = (1.0,)) -> dict[str, str]:
    """Everything the device needs, as ONNX metadata_props (string values; JSON where structured)."""
    state_shape = list(state_shape_of(config))
    return {
        "weights_id": weights_id(model),
        "labels": json.dumps(list(labels)),
        "sample_rate": str(config.features.sample_rate),
        "clip_samples": str(config.features.clip_samples),
        "features": json.dumps(asdict(config.features)),
        "config": json.dumps(config.to_dict()),
        "model_version": f"kws-edge {kws.__version__}",
        "parameter_count": str(model.parameter_count),
        # clip_steps: how many steps a "max" readout reads in a stream, as the window model reads a clip
        "stream": json.dumps({"file": stream_file, **asdict(layout), "state_shape": state_shape,
                              "clip_steps": clip_steps(config.features, config.model)}),
        "detection": json.dumps(detection or {}),
        "speeds": json.dumps(list(speeds)),  # the runtime hears the stream at each and averages (edge.runtime)
    }


def _with_metadata(proto, props: dict[str, str]):
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def _export_graph(module: nn.Module, args: tuple, names: tuple[list, list], dynamic_shapes, props, path: Path):
    import onnx

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on torch internals are not the user's concern
        program = torch.onnx.export(module.eval(), args, dynamo=True, input_names=names[0],
                                    output_names=names[1], dynamic_shapes=dynamic_shapes, verbose=False)
    proto = _with_metadata(program.model_proto, props)
    atomic_write(path, lambda tmp: onnx.save(proto, str(tmp)))


def export_models(model: KeywordLSTM, config: Config, labels: tuple[str, ...], out: Path,
                  stream_steps: int = 1, detection: dict | None = None,
                  speeds: tuple[float, ...] = (1.0,)) -> tuple[Path, Path]:
    """Write the window model to `out` and the streaming model beside it (NAME.stream.onnx)."""
    model.eval()
    layout = StreamLayout.of(config, stream_steps)
    stream_path = sibling(out, STREAM_SUFFIX)
    props = metadata(config, labels, model, layout, stream_path.name, detection, speeds)
    batch = torch.export.Dim("batch", min=1)
    _export_graph(WindowGraph(model), (torch.zeros(2, config.features.clip_samples),), (["audio"], ["logits"]),
                  {"audio": {0: batch}}, props | {"role": "window"}, out)
    h, c = (torch.zeros(state_shape_of(config)) for _ in range(2))
    # h and c must be distinct tensors: the exporter wires one tensor passed twice to both LSTM inputs.
    _export_graph(StreamGraph(model), (torch.zeros(1, layout.chunk_samples), h, c),
                  (["audio", "h", "c"], ["logits", "h_out", "c_out"]), None, props | {"role": "stream"}, stream_path)
    return out, stream_path


@dataclass(frozen=True)
class Parity:
    clips: int
    max_logit_diff: float  # window ONNX vs PyTorch
    argmax_mismatches: int
    stream_clips: int
    max_stream_diff: float  # streaming ONNX through the runtime's StreamScorer vs PyTorch per-step logits
    tolerance: float = TOLERANCE
    mismatch_share: float = 0.0  # of clips allowed another label than PyTorch's

    @property
    def ok(self) -> bool:
        return (self.max_logit_diff <= self.tolerance and self.max_stream_diff <= self.tolerance
                and self.argmax_mismatches <= self.mismatch_share * self.clips)

    def describe(self) -> str:
        return (f"on {self.clips} validation clips: max |logit diff| {self.max_logit_diff:.2e}, "
                f"{self.argmax_mismatches} argmax mismatches; streamed in chunks ({self.stream_clips} clips): "
                f"max diff {self.max_stream_diff:.2e} (limit {self.tolerance:g})")


def onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_window(session, waveforms: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[clips, clip_samples] -> logits [clips, n_labels] through a window ONNX model."""
    return np.concatenate([session.run(["logits"], {"audio": waveforms[i:i + batch_size]})[0]
                           for i in range(0, len(waveforms), batch_size)])


def verify(model: KeywordLSTM, config: Config, window_path: Path, stream_path: Path, waveforms: torch.Tensor,
           stream_clips: int = 32, tolerance: float | None = None, mismatch_share: float = 0.0) -> Parity:
    """Compare both ONNX models with PyTorch on real clips; `tolerance` on logits, default TOLERANCE. The
    streaming model is run by the runtime's own StreamScorer, so what is verified is what a device runs."""
    n_stream = min(stream_clips, len(waveforms))
    # The runtime starts as if after silence: its first step also hears `context` zeros before the clip.
    # Their count comes from the config, not from the metadata the runtime reads: a layout that disagrees fails.
    heard = nn.functional.pad(waveforms[:n_stream], (StreamLayout.of(config, steps=1).context_samples, 0))
    with torch.no_grad():
        expected = clip_logits_from_frames(model(waveforms), config.model).numpy()
        reference = model(heard).numpy()  # [clips, steps, n_labels]
    window = run_window(onnx_session(window_path), waveforms.numpy())
    scorer = StreamScorer.from_onnx(window_path, stream_path)
    stream_diff = 0.0
    for clip, clip_reference in zip(waveforms[:n_stream].numpy(), reference):
        scorer.reset()
        steps = np.array(scorer.push(clip))  # [steps, n_labels]
        if not len(steps):
            raise KwsError(f"one streaming call takes more audio than a clip ({len(clip)} samples), so none "
                           "could be checked; export with fewer --stream-steps")
        stream_diff = max(stream_diff, float(np.abs(steps - clip_reference[: len(steps)]).max()))
    return Parity(
        clips=len(waveforms),
        max_logit_diff=float(np.abs(window - expected).max()),
        argmax_mismatches=int((window.argmax(1) != expected.argmax(1)).sum()),
        stream_clips=n_stream,
        max_stream_diff=stream_diff,
        tolerance=TOLERANCE if tolerance is None else tolerance,
        mismatch_share=mismatch_share,
    )


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamically quantized copy: LSTM and head weights to int8; the MFCC front end (mel and DCT
    matrices) stays float. Constant folding first turns the exporter's weight plumbing into plain
    initializers, which is what the quantizer looks for."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as work:
        folded = Path(work) / "folded.onnx"
        quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)
        graph = onnx.load(str(folded)).graph
        front_end = [n.name for n in graph.node if any("front_end" in name for name in n.input)]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs generic advice through the root logger
        try:
            atomic_write(dst, lambda tmp: quantize_dynamic(str(folded), str(tmp), weight_type=QuantType.QInt8,
                                                           op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
                                                           nodes_to_exclude=front_end))
        finally:
            root.setLevel(level)
    quantized = onnx.load(str(dst))
    _with_metadata(quantized, {p.key: p.value for p in onnx.load(str(src)).metadata_props})
    atomic_write(dst, lambda tmp: onnx.save(quantized, str(tmp)))
    return dst


@dataclass(frozen=True)
class ExportReport:
    window: Path
    stream: Path
    parity: Parity
    accuracy: float  # window ONNX on the validation set
    int8: Path | None = None
    int8_stream: Path | None = None
    int8_accuracy: float | None = None
    int8_parity: Parity | None = None

    def summary(self) -> str:
        lines = [f"window model  {self.window} ({self.window.stat().st_size / 1024:.0f} KiB)",
                 f"stream model  {self.stream} ({self.stream.stat().st_size / 1024:.0f} KiB)",
                 f"parity {self.parity.describe()}",
                 f"validation accuracy (ONNX, float): {100 * self.accuracy:.2f}%"]
        if self.int8 is not None:
            lines.append(f"int8 models   {self.int8} ({self.int8.stat().st_size / 1024:.0f} KiB), {self.int8_stream}")
            lines.append(f"int8 parity {self.int8_parity.describe()}")
            lines.append(f"validation accuracy (ONNX, int8):  {100 * self.int8_accuracy:.2f}% "
                         f"({100 * (self.int8_accuracy - self.accuracy):+.2f} points)")
        return "\n".join(lines)


def _accuracy(path: Path, waveforms: torch.Tensor, labels: torch.Tensor) -> float:
    logits = run_window(onnx_session(path), waveforms.numpy())
    return float((logits.argmax(1) == labels.numpy()).mean())


def sibling(out: Path, suffix: str) -> Path:
    """The file that goes beside window model NAME.onnx as NAME + suffix (".stream.onnx", ".pt", ...)."""
    return out.with_name(out.name.removesuffix(".onnx") + suffix)


INT8_SUFFIXES = (".int8.onnx", ".int8" + STREAM_SUFFIX)


def _outputs(out: Path, int8: bool) -> list[Path]:
    """Every file an export puts beside `out`."""
    suffixes = (STREAM_SUFFIX, ".pt", *(INT8_SUFFIXES if int8 else ()))
    return [out, out.with_name("labels.txt"), *(sibling(out, s) for s in suffixes)]


def export_checkpoint(checkpoint: str | Path, out: str | Path, data_dir: str | Path, int8: bool = False,
                      verify_clips: int = 400, stream_steps: int = 1, detection: dict | None = None,
                      overwrite: bool = False, speeds: tuple[float, ...] = (1.0,)) -> ExportReport:
    """Export, verify against PyTorch on real validation clips, and only then put the files in place.
    Files already there (a shipped model, say) are replaced only with `overwrite`."""
    from kws.data import fixed_examples, load_split, scan

    out = Path(out)
    if out.suffix != ".onnx":
        raise KwsError(f"--out must name an .onnx file, not {out}")
    existing = [path.name for path in _outputs(out, int8) if path.exists()]
    if existing and not overwrite:
        raise KwsError(f"{out.parent} already holds {', '.join(existing)}; export into another folder, or "
                       "pass --force to replace them")
    model, config, labels = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    audio = load_split(scan(data_dir, config.data), "validation", labels[2:], config)
    waveforms, targets = fixed_examples(audio, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export.") as staging:
        window, stream = export_models(model, config, labels, Path(staging) / out.name, stream_steps, detection,
                                       speeds)
        parity = verify(model, config, window, stream, waveforms[:verify_clips])
        if not parity.ok:
            raise KwsError(f"exported model disagrees with PyTorch: {parity.describe()}; nothing was written")
        accuracy = _accuracy(window, waveforms, targets)
        labels_file = Path(staging) / "labels.txt"
        labels_file.write_text("\n".join(labels) + "\n")  # for people and for programs that skip the metadata
        weights = sibling(window, ".pt")
        save_checkpoint(weights, {"config": config.to_dict(), "labels": list(labels), "model": model.state_dict(),
                                  "parameter_count": model.parameter_count})  # no optimizer: for eval and export
        # streaming models before window models: a crash between two renames leaves a window model with a
        # streaming twin of another export, which the runtime refuses by their weights_id
        staged = [stream, labels_file, weights, window]
        q_window = q_stream = q_accuracy = q_parity = None
        if int8:
            q_window, q_stream = (quantize_int8(path, sibling(window, suffix))
                                  for path, suffix in zip((window, stream), INT8_SUFFIXES))
            _point_to_stream(q_window, q_stream.name)
            q_parity = verify(model, config, q_window, q_stream, waveforms[:verify_clips],
                              tolerance=INT8_TOLERANCE, mismatch_share=INT8_MISMATCH_SHARE)
            q_accuracy = _accuracy(q_window, waveforms, targets)
            if not q_parity.ok:
                raise KwsError(f"int8 copies disagree with PyTorch: {q_parity.describe()}; nothing was written")
            staged = [q_stream, stream, labels_file, weights, q_window, window]
        for path in staged:
            fsync(path)
            os.replace(path, out.parent / path.name)
        fsync(out.parent)

    def placed(path: Path | None) -> Path | None:
        return None if path is None else out.parent / path.name

    return ExportReport(placed(window), placed(stream), parity, accuracy, placed(q_window), placed(q_stream),
                        q_accuracy, q_parity)


def update_metadata(path: Path, change) -> None:
    """Rewrite an ONNX file's metadata with `change(props) -> props`, atomically."""
    import onnx

    proto = onnx.load(str(path))
    props = change({p.key: p.value for p in proto.metadata_props})
    atomic_write(path, lambda tmp: onnx.save(_with_metadata(proto, props), str(tmp)))


def _point_to_stream(window: Path, stream_name: str) -> None:
    """Make a window model's metadata name its own streaming twin."""
    update_metadata(window, lambda props: {
        **props, "stream": json.dumps({**json.loads(props["stream"]), "file": stream_name})})
