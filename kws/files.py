"""Files written so that a crash or power cut never leaves half of one: temporary name, flush, rename. No
PyTorch here, so that `kws record` and the runtime side can use it too."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def shared_mode() -> int:
    """The mode a plain new file gets under this process's umask (mkstemp's 0600 hides files from others)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk, so a power cut cannot leave a renamed but empty
    file behind."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: readers see the old file or the new, never half,
    even after a power cut (both the file and the rename are flushed to the disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, shared_mode())  # mkstemp's 0600 would make shared models unreadable to others
    try:
        write(Path(tmp))
        fsync(Path(tmp))
        os.replace(tmp, path)
        fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete what an atomic_write of `path` left when its process was killed (SIGKILL, power loss)
    before it could rename or clean up; returns the deleted files."""
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale
