"""edge.listen --on-detect: a fixed argument list per event, its output kept off stdout, every run reaped."""

import json
import subprocess
import sys
from pathlib import Path

from edge.listen import main

from test_edge import ROOT, _error


def _hook_script(tmp_path) -> Path:
    script = tmp_path / "record_event.py"
    script.write_text("#!" + sys.executable + "\n"
                      "import json, os, sys\n"
                      "with open(sys.argv[1], 'a') as f:\n"
                      "    f.write(json.dumps({'argv': sys.argv[1:], 'label': os.environ['KWS_LABEL'],\n"
                      "                        'score': os.environ['KWS_SCORE']}) + '\\n')\n")
    script.chmod(0o755)
    return script


def test_on_detect_runs_a_fixed_argument_list_with_the_event_in_its_environment(model, stream_wav, tmp_path,
                                                                                capsys):
    import time

    log_file = tmp_path / "events; touch injected.txt"  # shell syntax in an argument stays one argument
    command = f"{_hook_script(tmp_path)} '{log_file}' --mode 'two words'"
    assert main(["--model", str(model), "--wav", str(stream_wav), "--json", "--threshold", "0.5",
                 "--on-detect", command]) == 0
    printed = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    for _ in range(100):  # the hooks run in the background
        if log_file.exists() and len(log_file.read_text().splitlines()) == len(printed):
            break
        time.sleep(0.05)
    runs = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert sorted(r["label"] for r in runs) == sorted(printed) and printed
    assert all(r["argv"] == [str(log_file), "--mode", "two words"] for r in runs)
    assert not (tmp_path / "injected.txt").exists() and not Path("injected.txt").exists()


def test_on_detect_program_must_exist(model, stream_wav, capsys):
    assert main(["--model", str(model), "--wav", str(stream_wav), "--on-detect", "/no/such/program"]) == 2
    assert "not found" in _error(capsys)


def test_hook_output_stays_off_stdout_and_a_failing_hook_is_reported(model, stream_wav, tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text("#!" + sys.executable + "\nprint('HOOK SAYS HELLO')\nraise SystemExit(3)\n")
    script.chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(model), "--wav", str(stream_wav),
                             "--json", "--threshold", "0.5", "--on-detect", str(script)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is an event
    assert len(events) == 3
    assert result.stderr.count("HOOK SAYS HELLO") == 3
    assert result.stderr.count("exited with code 3") == 3


def _zombie_children() -> list[int]:
    import os

    zombies = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(stat.parent.name))
    return zombies


def test_hooks_are_reaped(model, stream_wav, tmp_path, capsys):
    log_file = tmp_path / "events.txt"
    assert main(["--model", str(model), "--wav", str(stream_wav), "--threshold", "0.5",
                 "--on-detect", f"{_hook_script(tmp_path)} {log_file}"]) == 0
    assert len(log_file.read_text().splitlines()) == 3  # all ran to the end before main returned
    assert _zombie_children() == []
