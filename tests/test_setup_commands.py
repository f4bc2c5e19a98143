"""The README's two set-up commands (the ones .ci/run runs) as bash runs them, against stand-ins for apt-get,
python3, pip, python and sudo that only log their arguments: as root on a machine without sudo (most
containers, CI) and as a user with sudo, every step runs in order, through sudo only where sudo is there.
.ci/run runs the real commands on a bare machine."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOGGING = '#!/bin/bash\necho "${0##*/} $*" >> "$LOG"\n'
STAND_INS = {
    "apt-get": LOGGING,
    "pip": LOGGING,
    "python": LOGGING,
    # python3 -m venv DIR makes DIR/bin/activate, so that `. .venv/bin/activate` works
    "python3": LOGGING + '[ "$1 $2" = "-m venv" ] && /bin/mkdir -p "$3/bin" && : > "$3/bin/activate"\nexit 0\n',
    "sudo": LOGGING + 'exec "$@"\n',
}


def readme_command(marker: str) -> str:
    """The line after the first ```bash following the marker, as .ci/run reads it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```bash"))
    return lines[fence + 1]


def _run(command: str, folder: Path, with_sudo: bool) -> list[str]:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, script in STAND_INS.items():
        if name != "sudo" or with_sudo:
            (bin_dir / name).write_text(script)
            (bin_dir / name).chmod(0o755)
    log = folder / "log"
    result = subprocess.run(["/bin/bash", "-c", command], cwd=folder, env={"PATH": str(bin_dir), "LOG": str(log)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


@pytest.mark.parametrize("marker, extras, last", [
    ("<!-- listen-command", "[edge]", "python -m edge.listen"),
    ("<!-- test-command", "[train,edge,test]", "python -m pytest"),
], ids=["listen-command", "test-command"])
@pytest.mark.parametrize("with_sudo", [False, True], ids=["root-without-sudo", "user-with-sudo"])
def test_the_readme_set_up_works_with_and_without_sudo(tmp_path, marker, extras, last, with_sudo):
    steps = _run(readme_command(marker), tmp_path, with_sudo)
    apt = [step for step in steps if step.startswith(("apt-get", "sudo"))]
    if with_sudo:
        assert apt[0] == "sudo apt-get update"
        assert apt[2].startswith("sudo apt-get install -y python3-venv libportaudio2")
    else:
        assert apt[0] == "apt-get update" and apt[1].startswith("apt-get install -y python3-venv libportaudio2")
    rest = [step for step in steps if not step.startswith(("apt-get", "sudo"))]
    assert rest == ["python3 -m venv .venv", f"pip install -e .{extras}", last]
    assert not any(step.startswith("sudo") for step in steps[len(apt):])  # nothing after apt-get runs as root
