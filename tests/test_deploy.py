"""The service unit's command line really runs edge.listen, unprivileged, with the audio group."""

import configparser
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "tools" / "kws-listen.service"


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(UNIT)
    return parser["Service"]


def test_unit_runs_unprivileged_in_the_audio_group_and_restarts():
    service = _service()
    assert service["User"] == "kws" and service["SupplementaryGroups"] == "audio"
    assert service["Restart"] == "on-failure"
    assert service["IPAddressDeny"] == "any"  # the runtime needs no network


def test_unit_command_line_hears_a_clip(tmp_path):
    clip = next((ROOT / "tests" / "data" / "clips").glob("yes_*.flac"))
    command = service_command = _service()["ExecStart"]
    command = command.replace("/opt/kws-edge/venv/bin/python", sys.executable)
    command = command.replace("/opt/kws-edge/models", str(ROOT / "models"))
    command = command.replace("$KWS_ARGS", f"--wav {shlex.quote(str(clip))}")
    assert "edge.listen" in service_command and "--json" in service_command
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["yes"]

