"""kws.download against a tiny Range-capable HTTP server on 127.0.0.1: no test touches the network."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kws.download import download, download_speech_commands, extract_tar
from kws.errors import KwsError

ARCHIVE_NAME = "speech_commands_v0.02.tar.gz"
FILES = {
    "LICENSE": b"CC-BY-4.0\n",
    "validation_list.txt": b"yes/a_nohash_0.wav\n",
    "yes/a_nohash_0.wav": os.urandom(40_000),  # incompressible, so the archive spans several reads
    "no/b_nohash_0.wav": os.urandom(30_000),
}


class _Server(ThreadingHTTPServer):
    """Serves one payload; records each request's Range header; can misbehave on request."""

    daemon_threads = True
    payload = b""
    honour_range = True
    cut_after: int | None = None  # close the connection after this many body bytes

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ranges: list[str | None] = []

    def url(self, name: str = ARCHIVE_NAME) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        data, header = self.server.payload, self.headers.get("Range")
        self.server.ranges.append(header)
        start = int(re.fullmatch(r"bytes=(\d+)-", header)[1]) if header and self.server.honour_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:][: self.server.cut_after])

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def _good_archive() -> bytes:
    return _tar_gz([(_member(name), data) for name, data in FILES.items()])


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its bytes (or link target), to prove nothing else was written."""
    def content(p: Path) -> bytes | str:
        return os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"

    return {str(p.relative_to(root)): content(p) for p in sorted(root.rglob("*"))}


def test_download_verifies_and_extracts(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    sha = hashlib.sha256(server.payload).hexdigest()
    out = download_speech_commands(tmp_path, url=server.url(), sha256=sha, progress=False)
    assert out == tmp_path / "speech_commands"
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == FILES
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == server.payload
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ARCHIVE_NAME, "speech_commands"])
    assert server.ranges == [None]


def test_existing_verified_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    sha = hashlib.sha256(server.payload).hexdigest()
    dest = download(server.url(), tmp_path / ARCHIVE_NAME, sha, progress=False)
    assert download(server.url(), dest, sha, progress=False) == dest
    assert len(server.ranges) == 1


def test_existing_file_with_wrong_checksum_is_refused(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    dest = tmp_path / ARCHIVE_NAME
    dest.write_bytes(b"someone else's file")
    with pytest.raises(KwsError, match="already exists"):
        download(server.url(), dest, hashlib.sha256(server.payload).hexdigest(), progress=False)
    assert dest.read_bytes() == b"someone else's file"
    assert server.ranges == []


def test_resume_from_partial_file(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    dest = tmp_path / ARCHIVE_NAME
    dest.with_name(ARCHIVE_NAME + ".part").write_bytes(server.payload[:1000])
    download(server.url(), dest, hashlib.sha256(server.payload).hexdigest(), progress=False)
    assert server.ranges == ["bytes=1000-"]
    assert dest.read_bytes() == server.payload
    assert not dest.with_name(ARCHIVE_NAME + ".part").exists()


def test_server_without_range_support_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    server.payload, server.honour_range = _good_archive(), False
    dest = tmp_path / ARCHIVE_NAME
    dest.with_name(ARCHIVE_NAME + ".part").write_bytes(b"stale bytes that must not survive")
    download(server.url(), dest, hashlib.sha256(server.payload).hexdigest(), progress=False)
    assert server.ranges == ["bytes=33-"]
    assert dest.read_bytes() == server.payload


def test_complete_partial_file_is_verified_without_refetching(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    dest = tmp_path / ARCHIVE_NAME
    dest.with_name(ARCHIVE_NAME + ".part").write_bytes(server.payload)
    download(server.url(), dest, hashlib.sha256(server.payload).hexdigest(), progress=False)
    assert server.ranges == [f"bytes={len(server.payload)}-"]  # answered 416, no body
    assert dest.read_bytes() == server.payload


def test_dropped_connection_keeps_part_and_resumes_on_rerun(server: _Server, tmp_path: Path) -> None:
    server.payload, server.cut_after = _good_archive(), 5000
    dest, sha = tmp_path / ARCHIVE_NAME, hashlib.sha256(server.payload).hexdigest()
    with pytest.raises(KwsError, match="Run the same command again to resume") as err:
        download(server.url(), dest, sha, progress=False)
    assert "\n" not in str(err.value)
    assert dest.with_name(ARCHIVE_NAME + ".part").stat().st_size == 5000
    assert not dest.exists()
    server.cut_after = None  # "run the same command again"
    download(server.url(), dest, sha, progress=False)
    assert server.ranges == [None, "bytes=5000-"]
    assert dest.read_bytes() == server.payload


def test_unreachable_server_gives_one_line_resume_hint(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KwsError, match="Run the same command again to resume") as err:
        download(f"http://127.0.0.1:{port}/x.tar.gz", tmp_path / "x.tar.gz", None, progress=False)
    assert "\n" not in str(err.value)


def test_checksum_mismatch_raises_and_leaves_no_file(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    dest = tmp_path / ARCHIVE_NAME
    with pytest.raises(KwsError, match="checksum mismatch"):
        download(server.url(), dest, "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither dest nor a .part to resume from


# Each case: members placed after a harmless one, and the member that must be named in the error.
# "{outside}" becomes the absolute path of a folder beside the target.
MALICIOUS = {
    "parent_dir": ([(_member("../evil.txt"), b"pwned")], "../evil.txt"),
    "absolute_path": ([(_member("{outside}/evil.txt"), b"pwned")], "{outside}/evil.txt"),
    "symlink_to_etc_passwd": ([(_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), None)], "passwd"),
    "symlink_outside_then_write_through": (
        [(_member("escape", tarfile.SYMTYPE, "../outside"), None), (_member("escape/evil.txt"), b"pwned")],
        "escape",
    ),
    "hardlink_outside": ([(_member("hard", tarfile.LNKTYPE, "../outside/secret.txt"), None)], "hard"),
    "hardlink_absolute": ([(_member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)], "hard"),
    "device_file": ([(_member("tty", tarfile.CHRTYPE), None)], "tty"),
}


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_archive_is_refused_and_writes_nothing(case: str, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"secret")
    members, bad_name = MALICIOUS[case]
    outside = str(tmp_path / "outside")
    members = [(_member("ok.txt"), b"fine")] + [
        (_member(info.name.format(outside=outside), info.type, info.linkname), data) for info, data in members
    ]
    bad_name = bad_name.format(outside=outside)
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_gz(members))
    before = _snapshot(tmp_path)
    with pytest.raises(KwsError, match=re.escape(repr(bad_name))):
        extract_tar(archive, tmp_path / "data")
    assert _snapshot(tmp_path) == before  # no target, no staging folder, nothing outside touched


def test_non_empty_target_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(_good_archive())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_bytes(b"keep me")
    with pytest.raises(KwsError, match="not empty"):
        extract_tar(archive, tmp_path / "data")
    assert _snapshot(tmp_path / "data") == {"mine.txt": b"keep me"}


def test_non_empty_target_is_refused_before_downloading(server: _Server, tmp_path: Path) -> None:
    server.payload = _good_archive()
    (tmp_path / "speech_commands").mkdir()
    (tmp_path / "speech_commands" / "mine.txt").write_bytes(b"keep me")
    with pytest.raises(KwsError, match="not empty"):
        download_speech_commands(tmp_path, url=server.url(), sha256=None, progress=False)
    assert server.ranges == []


def test_empty_target_is_filled(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(_good_archive())
    (tmp_path / "data").mkdir()
    extract_tar(archive, tmp_path / "data")
    assert (tmp_path / "data" / "LICENSE").read_bytes() == FILES["LICENSE"]


def test_damaged_archive_raises_and_leaves_no_target(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(_good_archive()[:-2000])
    with pytest.raises(KwsError, match="download it again"):
        extract_tar(archive, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_NAME]
