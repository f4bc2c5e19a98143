"""Download and unpack Google Speech Commands v0.02 for users who have the internet.

Downloads go to a `.part` file that is resumed with an HTTP Range request, checked for size and SHA-256,
and only then renamed into place, so an existing archive is always a whole, verified one. Archives are
unpacked with tarfile's "data" filter into a temporary sibling folder that is renamed at the end, so the
target is either absent or complete, and nothing is ever written outside it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from kws.errors import KwsError

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 30.0  # per socket operation, not for the whole download


def download(url: str, dest: Path, sha256: str | None, progress: bool = True) -> Path:
    """Download url to dest (resuming dest + ".part"), verify size and SHA-256, and return dest."""
    dest = Path(dest)
    if dest.exists():
        _check_existing(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        _fetch(url, part, progress)
    except (OSError, http.client.HTTPException) as e:
        reason = " ".join(str(e).split()) or type(e).__name__  # keep the message on one line
        raise KwsError(
            f"downloading {url} failed: {reason}. Run the same command again to resume "
            f"(the partial file is kept at {part})."
        ) from e
    if sha256 is not None:
        actual = _sha256_of(part)
        if actual != sha256.lower():
            part.unlink()  # resuming a corrupt file can never succeed, so start afresh next time
            raise KwsError(
                f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {actual}. "
                "The partial file was deleted; run the same command again to download it afresh."
            )
    os.replace(part, dest)  # atomic: dest only ever holds a complete, verified file
    return dest


def _check_existing(dest: Path, sha256: str | None) -> None:
    """Accept a dest that is already there, unless its checksum proves it is another file."""
    if sha256 is not None and _sha256_of(dest) != sha256.lower():
        raise KwsError(
            f"{dest} already exists but its SHA-256 is not {sha256}. Delete it and run the command again."
        )


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Append the rest of url to part (or rewrite it when the server cannot resume); check the size."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        # 416: nothing lies beyond `have`. Either the .part is already whole, or it is longer than the file.
        if _range_total(e.headers.get("Content-Range")) == have:
            return
        part.unlink()
        return _fetch(url, part, progress)
    with response:
        if response.status != 206:
            have = 0  # the server ignored the Range header and sends the whole file: start over
        total = _expected_total(response, have)
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            while chunk := response.read(_CHUNK_BYTES):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        # urllib does not raise when the connection closes early, so the size check catches it.
        raise ConnectionError(f"got {size} of {total} bytes")


def _expected_total(response: http.client.HTTPResponse, have: int) -> int | None:
    """Full file size in bytes from Content-Range (206) or Content-Length, None when the server is silent."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {have}-"):
            raise ConnectionError(f"server resumed at the wrong offset ({content_range!r}, wanted {have})")
        total = _range_total(content_range)
        if total is not None:
            return total
    length = response.headers.get("Content-Length")
    return have + int(length) if length is not None and length.isdigit() else None


def _range_total(content_range: str | None) -> int | None:
    """The N of a "bytes a-b/N" or "bytes */N" header; None when absent or unknown ("*")."""
    total = (content_range or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def extract_tar(archive: Path, target: Path) -> Path:
    """Unpack a .tar.gz into target (which must be absent or empty), refusing any unsafe member."""
    archive, target = Path(archive), Path(target)
    if not hasattr(tarfile, "data_filter"):
        raise KwsError("safe extraction needs Python 3.10.12, 3.11.4, 3.12 or newer; upgrade Python.")
    _check_target_free(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter=_strict_data_filter)
        if target.exists():
            target.rmdir()  # empty (checked above); a directory cannot be renamed over a non-empty one
        staging.rename(target)
    except tarfile.FilterError as e:
        raise KwsError(f"refused to extract {archive}: unsafe member {e.tarinfo.name!r} ({e}).") from e
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise KwsError(
            f"could not extract {archive}: {e}. If the archive is damaged, delete it and download it again."
        ) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    return target


def _strict_data_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, but refuse absolute names instead of quietly stripping the leading "/"."""
    if member.name.startswith(("/", os.sep)) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest_path)


def _check_target_free(target: Path) -> None:
    if target.is_file() or (target.is_dir() and any(target.iterdir())):
        raise KwsError(f"{target} already exists and is not empty. Delete it or choose another folder.")


def download_speech_commands(
    out_dir: Path,
    url: str = SPEECH_COMMANDS_URL,
    sha256: str | None = SPEECH_COMMANDS_SHA256,
    progress: bool = True,
) -> Path:
    """Download Speech Commands into out_dir, unpack it to out_dir/"speech_commands" and return that.

    The archive is kept next to it, so a second extraction needs no second download.
    """
    out_dir = Path(out_dir)
    target = out_dir / "speech_commands"
    _check_target_free(target)  # fail before a 2.3 GB download, not after
    name = Path(urllib.parse.urlparse(url).path).name or "speech_commands.tar.gz"
    archive = download(url, out_dir / name, sha256, progress=progress)
    return extract_tar(archive, target)
