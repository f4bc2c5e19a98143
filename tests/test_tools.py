"""The scripts in tools/ keep the project's convention: a mistake in their input is one line on stderr and
exit code 2, never a traceback (exit code 1)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import HAVE_TORCH, RATE

ROOT = Path(__file__).resolve().parent.parent
NEEDS_TORCH = pytest.mark.skipif(not HAVE_TORCH, reason="a training-side tool: needs the train extra")


def _tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name, args, says", [
    ("benchmark", ["--model", "none.onnx", "--seconds", "1"], "benchmark: error: model none.onnx not found"),
    ("soak", ["--model", "none.onnx", "--minutes", "0.1"], "soak: error: model none.onnx not found"),
    pytest.param("stream_check", ["--data", "nowhere", "--model", "none.onnx"], "stream_check: error: model none.onnx",
                 marks=NEEDS_TORCH),
    ("seed_spread", ["nowhere"], "seed_spread: error: nowhere holds no report"),
    pytest.param("few_shot", ["--data", "nowhere", "--negatives", "other", "--other", "other", "--out", "out"],
                 "few_shot: error: nowhere/happy does not exist", marks=NEEDS_TORCH),
    pytest.param("train_throughput", ["--data", "nowhere"], "train_throughput: error: --data nowhere is not a folder",
                 marks=NEEDS_TORCH),
], ids=["benchmark", "soak", "stream_check", "seed_spread", "few_shot", "train_throughput"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, name, args, says):
    (tmp_path / "other" / "words" / "happy").mkdir(parents=True)  # other speech without "on" or "off"
    sf.write(tmp_path / "other" / "words" / "happy" / "00003000_nohash_0.wav", np.zeros(RATE, np.float32), RATE)
    result = _tool(name, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(says) and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_virtual_mic_without_its_arguments_shows_its_usage_with_exit_code_2(tmp_path):
    result = _tool("virtual_mic", cwd=tmp_path)
    assert result.returncode == 2 and "play" in result.stderr
