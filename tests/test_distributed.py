"""Training under torchrun: two CPU processes (gloo) train as one process does with the same global batch,
only rank 0 writes, an interrupted two-process run resumes to the same weights, and `kws train` itself runs
under torchrun. Worker processes that prepare the batches give one model whatever their number. A GPU run
where PyTorch sees one."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kws.checkpoint import load_checkpoint
from kws.config import AugmentConfig, Config
from kws.errors import KwsError
from kws.train import train

from conftest import interrupted_in_epoch, tone_model_config

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5  # weights, one process against two: the same sums in another order (measured: 1.3e-7)

# train() as `kws train` calls it, in each process torchrun starts; it notes which rank saved checkpoints
SCRIPT = """
import json, os, sys
import kws.train
from kws.config import Config

config_file, data, out, stop_after = sys.argv[1:5]
saving = kws.train.save_checkpoint
def noted(path, state):
    with open(os.path.join(out, "writers.txt"), "a") as f:
        f.write(os.environ["RANK"] + "\\n")
    saving(path, state)
    if str(path).endswith("last.pt") and int(stop_after) == state["epoch"]:
        os._exit(3)  # killed after this epoch's checkpoint: the other process is stopped by torchrun
kws.train.save_checkpoint = noted
config = Config.from_dict(json.load(open(config_file)))
kws.train.train(data, out, config, resume=os.path.exists(os.path.join(out, "last.pt")), progress=False,
                device="cpu")
"""


def _plain_config() -> Config:
    """The tone settings without augmentation, silence cuts or dropout: nothing random but the draw of
    examples, which every process makes alike, so one process and two must agree."""
    config = tone_model_config(hidden_size=16, epochs=2)
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, silence_percent=0.0),
        augment=AugmentConfig(shift_ms=0, speed_change=0.0, noise_probability=0.0, time_masks=0, freq_masks=0))


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _two_processes(tmp_path: Path, data: Path, out: Path, stop_after: int = 0) -> subprocess.CompletedProcess:
    (tmp_path / "config.json").write_text(json.dumps(_plain_config().to_dict()))
    (tmp_path / "script.py").write_text(SCRIPT)
    out.mkdir(exist_ok=True)
    return _torchrun(str(tmp_path / "script.py"), str(tmp_path / "config.json"), str(data), str(out), str(stop_after))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.fixture(scope="module")
def two_process_run(tiny_data, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    done = _two_processes(tmp_path, tiny_data, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "run", done


def test_two_processes_train_as_one_with_the_same_global_batch(two_process_run, tiny_data, tmp_path):
    run, _ = two_process_run
    torch.set_num_threads(1)
    train(tiny_data, tmp_path / "one", _plain_config(), progress=False, echo=lambda line: None, device="cpu")
    one, two = _weights(tmp_path / "one"), _weights(run)
    worst = max(float((one[key] - two[key]).abs().max()) for key in one)
    assert worst < TOLERANCE, f"weights differ by {worst}"
    assert load_checkpoint(run / "last.pt")["arithmetic"]["processes"] == "2"


def test_only_rank_0_writes_and_speaks(two_process_run):
    run, done = two_process_run
    assert set((run / "writers.txt").read_text().split()) == {"0"}
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.csv",
                                                     "metrics.json", "writers.txt"]
    assert done.stdout.count("epoch   2/2") == 1, done.stdout
    assert "processes 2" in done.stdout


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(two_process_run, tiny_data, tmp_path):
    run, _ = two_process_run
    out = tmp_path / "resumed"
    stopped = _two_processes(tmp_path, tiny_data, out, stop_after=1)
    assert stopped.returncode != 0 and load_checkpoint(out / "last.pt")["epoch"] == 1
    resumed = _two_processes(tmp_path, tiny_data, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout
    whole, again = _weights(run), _weights(out)
    assert all(torch.equal(whole[key], again[key]) for key in whole)


def test_kws_train_runs_under_torchrun(tiny_data, tmp_path):
    done = _torchrun("-m", "kws", "train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1",
                     "--hidden-size", "16", "--frame-stack", "3", "--device", "cpu", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch   1/1") == 1 and (tmp_path / "run" / "best.pt").exists()


def test_the_throughput_benchmark_prints_a_row_per_process_count(tiny_data, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "train_throughput.py"), "--data", str(tiny_data),
                           "--no-gpu", "--", "--hidden-size", "16", "--frame-stack", "3"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [(row[0], row[1]) for row in rows] == [("1", "cpu"), ("2", "cpu")]
    assert all(float(row[3]) > 0 for row in rows)
    failed = subprocess.run([sys.executable, str(ROOT / "tools" / "train_throughput.py"), "--data", str(tiny_data),
                             "--no-gpu", "--processes", "1", "--", "--epochs-typo", "1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr.startswith("train_throughput: error: 1 process(es) on cpu")


def _with_workers(tiny_data, out: Path, workers: int, sequence_ms: int = 0) -> dict:
    config = tone_model_config(hidden_size=16, epochs=2)  # augmentation on: every batch draws from its seed
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, sequence_ms=sequence_ms))
    train(tiny_data, out, config, progress=False, echo=lambda line: None, device="cpu", workers=workers)
    return load_checkpoint(out / "last.pt")


@pytest.mark.parametrize("sequence_ms", [0, 1500])
def test_worker_processes_give_the_same_model_whatever_their_number(tiny_data, tmp_path, sequence_ms):
    torch.set_num_threads(1)
    one, two = (_with_workers(tiny_data, tmp_path / f"w{n}", n, sequence_ms) for n in (1, 2))
    assert all(torch.equal(one["model"][key], two["model"][key]) for key in one["model"])
    assert one["arithmetic"] == two["arithmetic"] and "batches" in one["arithmetic"]
    # in the training process, the epoch's one generator augments every batch: another model, and no note
    inline = _with_workers(tiny_data, tmp_path / "w0", 0, sequence_ms)
    assert not all(torch.equal(one["model"][key], inline["model"][key]) for key in one["model"])
    assert "batches" not in inline["arithmetic"]


def test_a_run_with_workers_resumes_to_the_same_weights(tiny_data, tmp_path):
    torch.set_num_threads(1)
    whole = _with_workers(tiny_data, tmp_path / "whole", 2)
    with interrupted_in_epoch(1):
        _with_workers(tiny_data, tmp_path / "split", 2)
    config = tone_model_config(hidden_size=16, epochs=2)
    train(tiny_data, tmp_path / "split", config, resume=True, progress=False, echo=lambda line: None,
          device="cpu", workers=1)
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert all(torch.equal(whole["model"][key], split["model"][key]) for key in whole["model"])


def test_workers_must_be_zero_or_more(tiny_data, tmp_path):
    with pytest.raises(KwsError, match="--workers must be 0 or more"):
        train(tiny_data, tmp_path / "run", tone_model_config(hidden_size=16, epochs=1), progress=False,
              echo=lambda line: None, device="cpu", workers=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch sees no CUDA GPU here")
def test_training_on_a_gpu_gives_a_checkpoint_the_cpu_loads(tiny_data, tmp_path):
    result = train(tiny_data, tmp_path / "gpu", tone_model_config(hidden_size=16, epochs=2), progress=False,
                   echo=lambda line: None, device="cuda")
    state = load_checkpoint(tmp_path / "gpu" / "best.pt")
    assert all(tensor.device.type == "cpu" for tensor in state["model"].values())
    assert "device" in state["arithmetic"] and result.best_accuracy > 0.5
