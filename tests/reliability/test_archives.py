"""Archives stay inside their folder; downloads are checked; dataset pickles run no code.

- Crafted tar members (``../``, absolute paths, links pointing outside, devices, fifos,
  Windows-style names) are refused before anything is written: the target folder and the
  folder around it hold exactly what they held before.
- Downloads come from a local ``http.server`` on 127.0.0.1 (no internet): a truncated,
  altered, cut-off or garbled transfer is detected, its partial file removed, the failure
  reported in one line, and a previous good copy left untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnarch.data import sources
from cnnarch.data.archives import download, safe_extract
from cnnarch.errors import UserError


def _snapshot(folder: Path) -> dict:
    """Every path under ``folder`` -> its bytes (files), link target (links) or None (dirs)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = ("link", str(p.readlink()))
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
        else:
            out[str(p.relative_to(folder))] = None
    return out


def _member(name: str, data: bytes = b"x", **attrs) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE,
                     tarfile.BLKTYPE, tarfile.FIFOTYPE):
        info.size = 0
        data = None
    return info, data


def _tar(path: Path, members) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _evil_archives(outside: Path):
    ok = _member("data/ok.txt", b"fine")
    yield "dotdot", [ok, _member("../escaped.txt", b"pwn")]
    yield "dotdot-deep", [ok, _member("data/../../escaped.txt", b"pwn")]
    yield "absolute", [ok, _member(str(outside / "abs.txt"), b"pwn")]
    yield "absolute-root", [_member("/etc/cnnarch-test-should-not-exist", b"pwn")]
    yield "symlink-out-abs", [_member("data/link", type=tarfile.SYMTYPE, linkname=str(outside))]
    yield "symlink-out-rel", [_member("data/link", type=tarfile.SYMTYPE, linkname="../../outside")]
    yield "symlink-then-write", [_member("link", type=tarfile.SYMTYPE, linkname="../outside"),
                                 _member("link/through.txt", b"pwn")]
    yield "hardlink-out", [_member("data/hl", type=tarfile.LNKTYPE,
                                   linkname=str(outside / "secret.txt"))]
    yield "hardlink-dotdot", [_member("data/hl", type=tarfile.LNKTYPE, linkname="../outside/secret.txt")]
    yield "char-device", [_member("data/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)]
    yield "fifo", [_member("data/fifo", type=tarfile.FIFOTYPE)]
    yield "backslash", [_member("..\\escaped.txt", b"pwn")]
    yield "drive", [_member("C:/escaped.txt", b"pwn")]
    yield "late-bad-member", [ok] * 3 + [_member("../escaped.txt", b"pwn")]


def test_evil_archives_refused_nothing_written(tmp_path, reliability_log):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    n = 0
    for name, members in _evil_archives(outside):
        target = tmp_path / "target" / name
        target.mkdir(parents=True)
        (target / "existing.txt").write_bytes(b"keep me")
        archive = _tar(tmp_path / f"{name}.tar.gz", members)
        before_out, before_target = _snapshot(outside), _snapshot(target)
        with pytest.raises(UserError) as info:
            safe_extract(archive, target)
        assert "\n" not in str(info.value)
        assert _snapshot(outside) == before_out, f"{name}: wrote outside the target"
        assert _snapshot(target) == before_target, f"{name}: left a partial extraction"
        assert not (tmp_path / "target" / "escaped.txt").exists()
        assert not (tmp_path / "escaped.txt").exists()
        n += 1
    assert not Path("/etc/cnnarch-test-should-not-exist").exists()
    reliability_log["crafted tar archives"] = n


def test_good_archive_extracts_and_replaces_atomically(tmp_path):
    target = tmp_path / "t"
    archive = _tar(tmp_path / "ok.tar.gz", [
        _member("d", type=tarfile.DIRTYPE), _member("d/a.txt", b"a"),
        _member("d/inner", type=tarfile.SYMTYPE, linkname="a.txt")])
    safe_extract(archive, target)
    assert (target / "d" / "a.txt").read_bytes() == b"a"
    assert (target / "d" / "inner").read_bytes() == b"a"
    assert not list(target.glob(".extract-*"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_archive_is_one_line(tmp_path, damage):
    archive = _tar(tmp_path / "ok.tar.gz", [_member(f"d/{i}.bin", bytes(5000)) for i in range(20)])
    data = archive.read_bytes()
    archive.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x1f\x8b" + bytes(100),
                         "empty": b""}[damage])
    target = tmp_path / "t"
    with pytest.raises(UserError):
        safe_extract(archive, target)
    assert not list(target.glob("**/*.bin"))


def test_cli_refuses_evil_cifar_archive(tmp_path, cli, user_error):
    """Through the whole stack: `train --data cifar10 --data-dir EVIL.tar.gz`."""
    archive = _tar(tmp_path / "cifar-10-python.tar.gz", [_member("../escaped.txt", b"pwn")])
    user_error(cli(["train", "resnet20", "--data", "cifar10", "--data-dir", str(archive),
                    "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]), "refusing")
    assert not (tmp_path.parent / "escaped.txt").exists()


# --- CIFAR pickles ------------------------------------------------------------------------

def _cifar_folder(root: Path, n: int = 20, payload=None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        if payload is not None and name == "data_batch_1":
            batch[b"extra"] = payload
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def test_cifar_pickle_with_code_is_refused(tmp_path, evil_pickle):
    _cifar_folder(tmp_path / "data", payload=evil_pickle.payload())
    with pytest.raises(UserError, match="refusing"):
        sources.load_dataset("cifar10", data_dir=tmp_path / "data")
    evil_pickle.assert_not_run()


def test_cifar_fake_folder_loads(tmp_path):
    _cifar_folder(tmp_path / "data")
    ds = sources.load_dataset("cifar10", data_dir=tmp_path / "data")
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.num_classes == 10


# --- downloads ----------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        mode, body = self.routes[self.path]
        if mode == "404":
            self.send_error(404)
            return
        if mode == "garbled-status":
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
            return
        self.send_response(200)
        declared = len(body) * 2 if mode == "cut-off" else len(body)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if mode == "cut-off":  # promise more than is sent, then hang up
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, _Handler.routes
    httpd.shutdown()
    httpd.server_close()
    _Handler.routes.clear()


GOOD = bytes(range(256)) * 400
GOOD_MD5 = hashlib.md5(GOOD).hexdigest()
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


def test_good_download(server, tmp_path):
    base, routes = server
    routes["/f"] = ("ok", GOOD)
    dest = download(f"{base}/f", tmp_path / "f.bin", md5=GOOD_MD5, sha256=GOOD_SHA)
    assert dest.read_bytes() == GOOD
    assert not list(tmp_path.glob("*.part"))


BAD_TRANSFERS = {
    "truncated": ("ok", GOOD[: len(GOOD) // 3]),
    "altered": ("ok", GOOD[:100] + b"\x00" + GOOD[101:]),
    "empty": ("ok", b""),
    "cut-off": ("cut-off", GOOD[: len(GOOD) // 2]),
    "not-found": ("404", b""),
    "garbled-status": ("garbled-status", b""),
}


@pytest.mark.parametrize("case", sorted(BAD_TRANSFERS))
def test_bad_download_detected_removed_reported(server, tmp_path, case):
    base, routes = server
    routes["/f"] = BAD_TRANSFERS[case]
    dest = tmp_path / "f.bin"
    dest.write_bytes(GOOD)  # a previous good copy
    with pytest.raises(UserError) as info:
        download(f"{base}/f", dest, md5=GOOD_MD5)
    message = str(info.value)
    assert "\n" not in message and f"{base}/f" in message
    if case in ("truncated", "altered", "empty"):
        assert "checksum" in message
    assert dest.read_bytes() == GOOD, "the previous good copy was touched"
    assert not list(tmp_path.glob("*.part")), "the partial download was left behind"


def test_no_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError):
        download(f"http://127.0.0.1:{port}/f", tmp_path / "f", md5=GOOD_MD5)
    assert not list(tmp_path.iterdir())


def _cifar_archive(tmp_path: Path) -> bytes:
    _cifar_folder(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


@pytest.mark.parametrize("case", ["good", "truncated", "altered"])
def test_cli_download_cifar(server, tmp_path, monkeypatch, cli, user_error, case):
    """`train --data cifar10 --download` against a local server: a bad transfer is refused in
    one line and leaves neither an archive nor a .part file; a good one trains."""
    base, routes = server
    data = _cifar_archive(tmp_path)
    files = sources.CIFAR["cifar10"]
    monkeypatch.setitem(sources.CIFAR, "cifar10", dataclasses.replace(
        files, url=f"{base}/cifar-10-python.tar.gz", md5=hashlib.md5(data).hexdigest()))
    served = {"good": data, "truncated": data[: len(data) // 2],
              "altered": data[:-10] + bytes(10)}[case]
    routes["/cifar-10-python.tar.gz"] = ("ok", served)
    data_dir = tmp_path / "cache"
    result = cli(["train", "resnet20", "--data", "cifar10", "--download", "--data-dir",
                  str(data_dir), "--iterations", "1", "--batch-size", "16", "--device", "cpu",
                  "--out", str(tmp_path / "run"), "--quiet"])
    if case == "good":
        assert result.code == 0, result.err
        return
    user_error(result, "checksum")
    assert not (data_dir / files.archive).exists()
    assert not list(data_dir.glob("*.part"))
