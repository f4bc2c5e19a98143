"""Make the small model that the runtime's tests use, tests/data/tiny/, so that they need no PyTorch.

    python tools/make_test_model.py [--out tests/data/tiny] [--force]

Trains a 32-unit LSTM for 12 epochs on the tone "words" of tests/conftest.py (yes, no, stop; "happy" is the
unknown word) and exports it with its streaming twin, as the `tiny_export` test fixture does, but without int8
copies. Needs the train extra (`pip install -e ".[train]"`) and a minute of one core. Run it again when the
export's format changes (test_export checks that the committed files still match it), then commit the files:
the edge tests expect exact events from them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEPT = ("kws.onnx", "kws.stream.onnx", "labels.txt")  # no checkpoint: the runtime needs none, and it is 140 KB


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make_test_model", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "tiny",
                        help="folder for kws.onnx, kws.stream.onnx and labels.txt (default: tests/data/tiny)")
    parser.add_argument("--force", action="store_true",
                        help="replace the files already in --out (default: refuse to replace them)")
    return parser


def make(out: Path) -> str:
    """Train and export into `out`; returns the export's summary."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_dataset, tone_model_config

    from kws.export import export_checkpoint
    from kws.train import train

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same arithmetic on every machine that runs it
    config = tone_model_config(hidden_size=32, epochs=12)
    with tempfile.TemporaryDirectory() as work:
        data = make_dataset(Path(work) / "data")
        train(data, Path(work) / "run", config, progress=False, echo=lambda line: None)
        report = export_checkpoint(Path(work) / "run" / "best.pt", Path(work) / "models" / "kws.onnx", data)
        out.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            (out / name).write_bytes((Path(work) / "models" / name).read_bytes())
        return report.summary().replace(str(Path(work) / "models"), str(out))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    existing = [name for name in KEPT if (args.out / name).exists()]
    if existing and not args.force:
        print(f"make_test_model: error: {args.out} already holds {', '.join(existing)}; pass --force to replace "
              "them", file=sys.stderr)
        return 2
    try:
        print(make(args.out))
    except ImportError as error:
        print(f"make_test_model: error: {error.name} is missing; install the train extra: "
              'pip install -e ".[train]"', file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
