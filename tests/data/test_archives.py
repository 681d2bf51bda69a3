import hashlib
import io
import tarfile

import pytest

from cnnarch.data.archives import download, safe_extract
from cnnarch.errors import UserError


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, hard=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


@pytest.mark.parametrize("member", [
    _file("../evil.txt"), _file("a/../../evil.txt"), _file("/tmp/abs_evil.txt"),
    _link("a/link", "../../outside"), _link("a/abs", "/etc/passwd"), _link("a/hard", "../x", hard=True),
])
def test_traversal_archives_are_refused_and_nothing_is_written(tmp_path, member):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("ok/fine.txt", b"fine"), member])
    target = tmp_path / "target"
    with pytest.raises(UserError, match="refusing"):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert not (target / "ok").exists()  # checked before anything is written
    assert [p.name for p in target.iterdir()] == []


def test_safe_extract_extracts_a_good_archive(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", [_file("d/a.txt", b"hello"), _link("d/l", "a.txt")])
    safe_extract(archive, tmp_path / "t")
    assert (tmp_path / "t" / "d" / "a.txt").read_bytes() == b"hello"


def test_checksum_mismatch_deletes_the_download_and_keeps_the_old_copy(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"altered payload")
    dest = tmp_path / "data" / "archive.tar.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"previous good copy")
    with pytest.raises(UserError, match="checksum mismatch.*deleted"):
        download(src.as_uri(), dest, md5=hashlib.md5(b"original").hexdigest())
    assert dest.read_bytes() == b"previous good copy"
    assert list(dest.parent.iterdir()) == [dest]  # no .part left behind


def test_download_verifies_and_renames(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = download(src.as_uri(), tmp_path / "out" / "a.bin",
                    sha256=hashlib.sha256(b"payload").hexdigest(), md5=hashlib.md5(b"payload").hexdigest())
    assert dest.read_bytes() == b"payload"


def test_failed_download_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="download"):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "x.bin", md5="0" * 32)
    assert not (tmp_path / "x.bin.part").exists()
