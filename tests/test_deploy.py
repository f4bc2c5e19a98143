"""The service unit's command line really runs edge.listen, unprivileged, with the audio group."""

import configparser
import json
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import read_line

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "tools" / "kws-listen.service"
SERVE_UNIT = ROOT / "tools" / "kws-serve.service"


def _service(unit: Path = UNIT) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(unit)
    return parser["Service"]


def test_unit_runs_unprivileged_in_the_audio_group_and_restarts():
    service = _service()
    assert service["User"] == "kws" and service["SupplementaryGroups"] == "audio"
    assert service["Restart"] == "on-failure"
    assert service["IPAddressDeny"] == "any"  # the runtime needs no network


def _write_args(path: Path, *args: str) -> subprocess.CompletedProcess:
    """The installer's own function that writes the service's arguments file."""
    script = f"source {shlex.quote(str(ROOT / 'tools' / 'install_service.sh'))} && write_args \"$@\""
    return subprocess.run(["bash", "-c", script, "write_args", str(path), *args], capture_output=True, text=True)


def _service_command(args_file: Path, unit: Path = UNIT) -> list[str]:
    """ExecStart as systemd splits it (no shell, no variables left), pointed at this checkout."""
    command = _service(unit)["ExecStart"]
    assert "$" not in command  # nothing for systemd to split or expand
    command = command.replace("/opt/kws-edge/venv/bin/python", sys.executable)
    command = command.replace("/opt/kws-edge/models", str(ROOT / "models"))
    command = command.replace(f"@/etc/{unit.stem}.args", "@" + str(args_file))
    return shlex.split(command)


def test_unit_command_line_hears_a_clip_with_arguments_holding_spaces_and_quotes(tmp_path):
    """What the installer is given reaches edge.listen intact, through the same file and parsing the
    service uses: a hook with spaces and quotes in its arguments runs with exactly those arguments."""
    clip = next((ROOT / "tests" / "data" / "clips").glob("yes_*.flac"))
    hook = tmp_path / "my hook.py"
    hook.write_text("#!" + sys.executable + "\nimport json, sys\n"
                    "open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n")
    hook.chmod(0o755)
    seen = tmp_path / "seen.json"
    on_detect = shlex.join([str(hook), str(seen), "lights toggle", "it's \"on\""])
    args_file = tmp_path / "kws-listen.args"
    written = _write_args(args_file, "--wav", str(clip), "--on-detect", on_detect)
    assert written.returncode == 0, written.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    result = subprocess.run(_service_command(args_file), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["yes"]
    assert json.loads(seen.read_text()) == ["lights toggle", "it's \"on\""]


def test_no_arguments_and_arguments_the_service_cannot_pass(tmp_path):
    args_file = tmp_path / "kws-listen.args"
    assert _write_args(args_file).returncode == 0 and args_file.read_text() == ""
    result = subprocess.run(_service_command(args_file) + ["--list-devices"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    refused = _write_args(args_file, "--on-detect", "two\nlines")
    assert refused.returncode == 2 and "line break" in refused.stderr
    assert args_file.read_text() == ""  # the previous file is left as it was


def test_the_wyoming_unit_starts_edge_serve_with_its_arguments(tmp_path):
    service = _service(SERVE_UNIT)
    assert service["User"] == "kws" and service["Restart"] == "on-failure"
    args_file = tmp_path / "kws-serve.args"
    socket_path = tmp_path / "kws serve.sock"  # a space, to show it arrives as one argument
    assert _write_args(args_file, "--uri", f"unix://{socket_path}").returncode == 0
    server = subprocess.Popen(_service_command(args_file, SERVE_UNIT), stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert "Wyoming service on unix://" in read_line(server.stderr, 60)
        assert socket_path.exists()
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode == 0
