"""The download step against a loopback HTTP server started by each test (no other network)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bacl.data import download as dl
from bacl.data import lvis_sources
from bacl.lvis_format import TRAINING_KEYS, image_relative_path, read_lvis
from bacl.data.download import (
    CorruptArchiveError,
    DiskSpaceError,
    DownloadError,
    LayoutError,
    download_file,
    extract_zip,
    marker_path,
    partial_path,
    prepare_lvis,
    read_marker,
)
from bacl.data.lvis_sources import ArchiveSource, SourceError
from bacl.errors import BaclError, MissingFileError
from tests.data.lvis_like import ArchiveServer, build_lvis_like, closed_port_url

FAST = {"progress": False, "retry_wait": 0.0, "timeout": 2.0}
PLENTY = lambda path: 1 << 50  # noqa: E731  (free space that never runs out)


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _zip_bytes(members: dict[str, bytes], *, stored: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _flip_inside(blob: bytes, needle: bytes) -> bytes:
    """``blob`` with one byte changed in the middle of ``needle`` (a stored member's data)."""
    at = blob.index(needle) + len(needle) // 2
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    with ArchiveServer(folder) as server:
        yield server


@pytest.fixture(scope="module")
def like(tmp_path_factory):
    return build_lvis_like(tmp_path_factory.mktemp("lvis_like"))


@pytest.fixture
def like_server(like):
    with ArchiveServer(like.served_dir) as server:
        yield server


def _prepare(tmp_path, like, server, **kwargs):
    args = dict(version="v1", lvis_dir=tmp_path / "lvis", coco_dir=tmp_path / "coco",
                downloads_dir=tmp_path / "downloads", sources=like.sources(server.url),
                free_space=PLENTY, **FAST)
    args.update(kwargs)
    return prepare_lvis(**args)


# --------------------------------------------------------------------------- download_file


def test_download_writes_the_verified_file(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", expected_size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (result.fetched_bytes, result.requests, result.resumed, result.restarted) == (len(data), 1, False, False)
    assert not partial_path(tmp_path / "a.bin").exists()


def test_cut_connection_resumes_with_range_byte_identical(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    served.cut_once["/a.bin"] = 100_000
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert [r[2] for r in served.gets("/a.bin")] == [None, "bytes=100000-"]
    assert result.resumed and not result.restarted and result.fetched_bytes == len(data)


def test_connection_cut_every_time_still_completes_with_ranges(served, tmp_path):
    data = _payload(50_000)
    (served.folder / "a.bin").write_bytes(data)
    served.cut_every["/a.bin"] = 12_000
    download_file(f"{served.url}/a.bin", tmp_path / "a.bin", retries=0, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert [r[2] for r in served.gets()] == [None, "bytes=12000-", "bytes=24000-", "bytes=36000-", "bytes=48000-"]


def test_same_cut_without_range_support_gives_up_after_the_retries(served, tmp_path):
    data = _payload(50_000)
    (served.folder / "a.bin").write_bytes(data)
    served.ranges = False
    served.cut_every["/a.bin"] = 12_000
    with pytest.raises(DownloadError, match="connection closed after 12000 of 50000 bytes"):
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", retries=2, **FAST)
    assert len(served.gets()) == 4  # one that made progress, then three that did not


def test_partial_file_of_an_earlier_run_is_continued(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    partial_path(tmp_path / "a.bin").write_bytes(data[:1234])
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", expected_size=len(data), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert [r[2] for r in served.gets()] == ["bytes=1234-"]
    assert result.fetched_bytes == len(data) - 1234 and result.resumed


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    served.ranges = False
    # Bytes that do not belong to the file: appending after them would corrupt it.
    partial_path(tmp_path / "a.bin").write_bytes(b"x" * 5000)
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert result.restarted and not result.resumed and result.fetched_bytes == len(data)


def test_cut_connection_without_range_support_restarts_cleanly(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    served.ranges = False
    served.cut_once["/a.bin"] = 70_000
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert len(served.gets()) == 2 and result.restarted


def test_complete_partial_file_needs_no_transfer(served, tmp_path):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    partial_path(tmp_path / "a.bin").write_bytes(data)
    # Size unknown: the server's 416 for a range past the end says the file is whole.
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data and result.fetched_bytes == 0
    assert [r[2] for r in served.gets()] == ["bytes=5000-"]
    # Size pinned: not even a request.
    partial_path(tmp_path / "b.bin").write_bytes(data)
    result = download_file(f"{served.url}/a.bin", tmp_path / "b.bin", expected_size=len(data), **FAST)
    assert result.requests == 0 and (tmp_path / "b.bin").read_bytes() == data


def test_finished_file_is_not_fetched_again_unless_it_fails_its_check(served, tmp_path):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    download_file(f"{served.url}/a.bin", tmp_path / "a.bin", sha256=sha, **FAST)
    again = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", sha256=sha, **FAST)
    assert again.requests == 0 and len(served.gets()) == 1
    (tmp_path / "a.bin").write_bytes(b"stale")
    fixed = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", sha256=sha, **FAST)
    assert fixed.requests == 1 and (tmp_path / "a.bin").read_bytes() == data


def test_stall_mid_body_times_out_and_resumes(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    served.stall_once_after["/a.bin"] = 50_000
    served.stall_s = 5.0
    result = download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **{**FAST, "timeout": 0.3})
    assert (tmp_path / "a.bin").read_bytes() == data
    assert [r[2] for r in served.gets()] == [None, "bytes=50000-"] and result.resumed


def test_size_announced_by_server_must_match_manifest(served, tmp_path):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    with pytest.raises(CorruptArchiveError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", expected_size=4999, **FAST)
    assert "5000" in str(err.value) and "4999" in str(err.value) and "a.bin" in str(err.value)
    assert not (tmp_path / "a.bin").exists() and not partial_path(tmp_path / "a.bin").exists()


def test_oversized_partial_file_is_discarded(served, tmp_path):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    partial_path(tmp_path / "a.bin").write_bytes(b"y" * 6000)
    download_file(f"{served.url}/a.bin", tmp_path / "a.bin", expected_size=5000, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data and [r[2] for r in served.gets()] == [None]


@pytest.mark.parametrize("digest", ["sha256", "md5"])
def test_pinned_checksum_mismatch_removes_the_download(served, tmp_path, digest):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    wrong = {"sha256": "0" * 64, "md5": "0" * 32}[digest]
    with pytest.raises(CorruptArchiveError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **{digest: wrong}, **FAST)
    message = str(err.value)
    assert "a.bin" in message and {"sha256": "SHA-256", "md5": "MD5"}[digest] in message and wrong in message
    assert list(tmp_path.glob("a.bin*")) == []


def test_md5_is_only_checked_without_a_sha256(served, tmp_path):
    data = _payload(5000)
    (served.folder / "a.bin").write_bytes(data)
    download_file(f"{served.url}/a.bin", tmp_path / "a.bin", sha256=hashlib.sha256(data).hexdigest(),
                  md5="0" * 32, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data


def test_404_is_one_line_and_not_retried(served, tmp_path):
    with pytest.raises(DownloadError) as err:
        download_file(f"{served.url}/missing.zip", tmp_path / "missing.zip", retries=3, **FAST)
    message = str(err.value)
    assert "HTTP 404" in message and f"{served.url}/missing.zip" in message and "\n" not in message
    assert len(served.gets()) == 1 and isinstance(err.value, (BaclError, OSError))


def test_connection_refused_is_retried_then_reported(tmp_path):
    url = closed_port_url()
    port = url.split(":")[2].split("/")[0]
    with pytest.raises(DownloadError) as err:
        download_file(url, tmp_path / "nothing.zip", retries=1, **FAST)
    message = str(err.value)
    assert f"connection refused by 127.0.0.1:{port}" in message and "2 failed attempts" in message
    assert "\n" not in message and not partial_path(tmp_path / "nothing.zip").exists()


def test_stalled_server_times_out(served, tmp_path):
    (served.folder / "a.bin").write_bytes(_payload(5000))
    served.stall.add("/a.bin")
    served.stall_s = 5.0
    with pytest.raises(DownloadError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", retries=1, **{**FAST, "timeout": 0.2})
    assert "no data for 0.2 s (timeout)" in str(err.value) and "2 failed attempts" in str(err.value)
    assert len(served.gets()) == 2


def test_cut_connection_keeps_bytes_when_attempts_run_out(served, tmp_path):
    data = _payload()
    (served.folder / "a.bin").write_bytes(data)
    served.stall.add("/a.bin")
    served.stall_s = 5.0
    partial_path(tmp_path / "a.bin").write_bytes(data[:777])
    with pytest.raises(DownloadError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", retries=0, **{**FAST, "timeout": 0.2})
    assert "777 bytes kept in a.bin.part, run again to resume" in str(err.value)
    assert partial_path(tmp_path / "a.bin").read_bytes() == data[:777]


def test_download_refuses_when_the_announced_size_does_not_fit(served, tmp_path):
    (served.folder / "a.bin").write_bytes(_payload(50_000))
    with pytest.raises(DiskSpaceError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", free_space=lambda p: 10_000, **FAST)
    assert "50.0 kB" in str(err.value) and "10.0 kB free" in str(err.value)


class _FullDisk:
    """A file whose writes fail as on a full disk, after storing a few bytes."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def write(self, data):
        self.handle.write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_disk_open(path, mode="r", *args, **kwargs):
    handle = open(path, mode, *args, **kwargs)
    return _FullDisk(handle) if "w" in mode or "+" in mode else handle


def test_disk_full_while_writing_is_one_line_and_keeps_the_bytes(served, tmp_path, monkeypatch):
    (served.folder / "a.bin").write_bytes(_payload(5000))
    monkeypatch.setattr(dl, "open", _full_disk_open, raising=False)
    with pytest.raises(DiskSpaceError) as err:
        download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **FAST)
    assert "the disk is full" in str(err.value) and "a.bin.part" in str(err.value) and "\n" not in str(err.value)
    assert partial_path(tmp_path / "a.bin").stat().st_size == 10


def test_disk_full_while_unpacking_leaves_nothing(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_bytes({"a/x": b"x" * 100}))
    monkeypatch.setattr(dl, "open", _full_disk_open, raising=False)
    with pytest.raises(DiskSpaceError, match="the disk is full"):
        extract_zip(archive, tmp_path / "out", progress=False, free_space=PLENTY)
    assert list((tmp_path / "out").iterdir()) == [] and archive.exists()


def test_progress_bar_shows_the_file(served, tmp_path, capsys):
    (served.folder / "a.bin").write_bytes(_payload(5000))
    download_file(f"{served.url}/a.bin", tmp_path / "a.bin", **{**FAST, "progress": True})
    err = capsys.readouterr().err
    assert "a.bin" in err and "100%" in err


def test_transfer_settings_are_checked():
    with pytest.raises(ValueError, match="timeout"):
        download_file("http://127.0.0.1:1/a", "a", timeout=0)
    with pytest.raises(ValueError, match="retries"):
        download_file("http://127.0.0.1:1/a", "a", retries=-1)


# --------------------------------------------------------------------------- extract_zip


def test_extract_places_the_entries_and_writes_the_marker(tmp_path):
    archive = tmp_path / "train2017.zip"
    archive.write_bytes(_zip_bytes({"train2017/1.jpg": b"one", "train2017/sub/2.jpg": b"two",
                                    "README.txt": b"not wanted"}))
    result = extract_zip(archive, tmp_path / "coco", entries=["train2017"], archive_sha256="ab" * 32,
                         progress=False, free_space=PLENTY)
    coco = tmp_path / "coco"
    assert (coco / "train2017" / "sub" / "2.jpg").read_bytes() == b"two"
    assert not (coco / "README.txt").exists()
    assert result.entries == ("train2017",) and result.members == 2 and result.unpacked_bytes == 6
    marker = read_marker(coco, "train2017.zip")
    assert marker["entries"] == {"train2017": {"type": "folder"}} and marker["archive_sha256"] == "ab" * 32
    assert _hidden(coco) == [".train2017.zip.complete"]


def test_bad_crc_is_named_removed_and_nothing_is_extracted(tmp_path):
    good = b"A" * 4000
    archive = tmp_path / "val2017.zip"
    archive.write_bytes(_flip_inside(_zip_bytes({"val2017/a.jpg": b"fine", "val2017/b.jpg": good}), good))
    with pytest.raises(CorruptArchiveError) as err:
        extract_zip(archive, tmp_path / "coco", entries=["val2017"], progress=False, free_space=PLENTY)
    message = str(err.value)
    assert "val2017.zip" in message and "val2017/b.jpg" in message and "CRC" in message
    assert not archive.exists()
    assert list((tmp_path / "coco").iterdir()) == []


def test_not_a_zip_is_corrupt(tmp_path):
    archive = tmp_path / "lvis_v1_val.json.zip"
    archive.write_bytes(b"<html>an error page</html>")
    with pytest.raises(CorruptArchiveError, match="lvis_v1_val.json.zip"):
        extract_zip(archive, tmp_path / "lvis", progress=False, free_space=PLENTY)
    assert not archive.exists()


def test_member_escaping_the_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip_bytes({"ok/a": b"a", "ok/../../escaped": b"b"}))
    with pytest.raises(CorruptArchiveError, match="outside the target folder"):
        extract_zip(archive, tmp_path / "out", progress=False, free_space=PLENTY)
    assert not (tmp_path / "escaped").exists() and list((tmp_path / "out").iterdir()) == []


def test_archive_without_the_expected_entry_is_refused(tmp_path):
    archive = tmp_path / "lvis_v1_train.json.zip"
    archive.write_bytes(_zip_bytes({"something_else.json": b"{}"}))
    with pytest.raises(CorruptArchiveError, match="lvis_v1_train.json"):
        extract_zip(archive, tmp_path / "lvis", entries=["lvis_v1_train.json"], progress=False, free_space=PLENTY)


def test_extraction_refuses_when_unpacked_size_does_not_fit(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_bytes({"a/big": b"z" * 20_000}, stored=False))
    with pytest.raises(DiskSpaceError, match=r"needs 20\.0 kB, 1\.0 kB free"):
        extract_zip(archive, tmp_path / "out", progress=False, free_space=lambda p: 1000)
    assert archive.exists()


class _Crash(BaseException):
    """Stands for the process being killed mid-extraction."""


def test_interrupted_extraction_leaves_nothing_and_is_redone(tmp_path, monkeypatch):
    members = {f"train2017/{k}.jpg": bytes([k]) * 100 for k in range(6)}
    archive = tmp_path / "train2017.zip"
    archive.write_bytes(_zip_bytes(members))
    coco = tmp_path / "coco"
    real_open, calls = zipfile.ZipFile.open, []

    def crashing_open(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 4:
            raise _Crash()
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", crashing_open)
    with pytest.raises(_Crash):
        extract_zip(archive, coco, entries=["train2017"], progress=False, free_space=PLENTY)
    assert list(coco.iterdir()) == []  # no half folder, no marker, no temporary folder
    monkeypatch.undo()

    # A harder crash (no clean-up at all): a temporary folder and an unmarked half folder.
    (coco / ".train2017.zip.extracting-dead").mkdir()
    (coco / ".train2017.zip.extracting-dead" / "junk").write_bytes(b"junk")
    (coco / "train2017").mkdir()
    (coco / "train2017" / "0.jpg").write_bytes(b"truncated")
    (coco / "train2017" / "stray.jpg").write_bytes(b"not from the archive")
    assert read_marker(coco, "train2017.zip") is None
    extract_zip(archive, coco, entries=["train2017"], progress=False, free_space=PLENTY)
    assert sorted(p.name for p in (coco / "train2017").iterdir()) == [f"{k}.jpg" for k in range(6)]
    assert (coco / "train2017" / "0.jpg").read_bytes() == bytes([0]) * 100
    assert _hidden(coco) == [".train2017.zip.complete"]


def test_marker_is_not_trusted_once_an_entry_is_gone_or_changed(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(_zip_bytes({"x.json": b"{}", "imgs/a": b"a"}))
    extract_zip(archive, tmp_path / "out", progress=False, free_space=PLENTY)
    assert read_marker(tmp_path / "out", "x.zip") is not None
    (tmp_path / "out" / "x.json").write_bytes(b"{} ")
    assert read_marker(tmp_path / "out", "x.zip") is None
    (tmp_path / "out" / "x.json").write_bytes(b"{}")
    (tmp_path / "out" / "imgs" / "a").unlink()
    (tmp_path / "out" / "imgs").rmdir()
    assert read_marker(tmp_path / "out", "x.zip") is None
    marker_path(tmp_path / "out", "x.zip").write_text("{not json")
    assert read_marker(tmp_path / "out", "x.zip") is None


# --------------------------------------------------------------------------- prepare_lvis


def test_prepare_lays_out_lvis_v1_and_a_second_run_makes_no_request(tmp_path, like, like_server):
    summary = _prepare(tmp_path, like, like_server)
    lvis, coco = tmp_path / "lvis", tmp_path / "coco"
    assert {s["status"] for s in summary["archives"].values()} == {"downloaded"}
    assert sorted(summary["archives"]) == ["lvis_v1_train.json.zip", "lvis_v1_val.json.zip",
                                           "train2017.zip", "val2017.zip"]
    assert summary["annotations"] == {"train": str(lvis / "lvis_v1_train.json"), "val": str(lvis / "lvis_v1_val.json")}
    assert sorted(p.name for p in lvis.iterdir() if not p.name.startswith(".")) == ["lvis_v1_train.json", "lvis_v1_val.json"]
    laid_out = sorted(str(p.relative_to(coco)) for p in coco.rglob("*.jpg"))
    assert laid_out == like.tree["coco"]
    json.dumps(summary)  # the pipeline writes it as is
    served_bytes = sum(like.entries[n]["size"] for n in summary["archives"])
    assert summary["downloaded_bytes"] == served_bytes and summary["requests"] == 4

    # The presets read these files as they are: every record checks and every image is there.
    for split in ("train", "val"):
        path = lvis / f"lvis_v1_{split}.json"
        assert json.loads(path.read_text()) == like.annotations["v1"][split]
        tables = read_lvis(path, require=TRAINING_KEYS)
        assert all((coco / rel).is_file() for rel in tables.image_paths)

    before = list(like_server.requests)
    again = _prepare(tmp_path, like, like_server)
    assert like_server.requests == before  # not a single request
    assert {s["status"] for s in again["archives"].values()} == {"present"}
    assert again["downloaded_bytes"] == 0 and again["requests"] == 0


def test_prepare_v05_val_fetches_only_what_it_needs(tmp_path, like, like_server):
    summary = _prepare(tmp_path, like, like_server, version="lvis_v0.5", splits=("val",))
    assert sorted(r[1] for r in like_server.gets()) == ["/lvis_v0.5_val.json.zip", "/val2017.zip"]
    assert summary["annotations"] == {"val": str(tmp_path / "lvis" / "lvis_v0.5_val.json")}
    assert not (tmp_path / "coco" / "train2017").exists()


def test_both_versions_share_one_coco_folder(tmp_path, like, like_server):
    _prepare(tmp_path, like, like_server, version="v1")
    summary = _prepare(tmp_path, like, like_server, version="v0.5")
    assert summary["archives"]["train2017.zip"]["status"] == "present"
    assert summary["archives"]["lvis_v0.5_train.json.zip"]["status"] == "downloaded"
    assert [r[1] for r in like_server.gets()].count("/train2017.zip") == 1


def test_mirror_replaces_the_address_but_keeps_file_names(tmp_path, like):
    assert lvis_sources.resolve_url(lvis_sources.OFFICIAL["train2017.zip"]) == \
        "http://images.cocodataset.org/zips/train2017.zip"
    assert lvis_sources.resolve_url(lvis_sources.OFFICIAL["lvis_v1_val.json.zip"], "https://m.example.org/data/") == \
        "https://m.example.org/data/lvis_v1_val.json.zip"
    # The built archives' own addresses point nowhere (.invalid); only the mirror is asked.
    with ArchiveServer(like.served_dir.parent) as server:
        summary = _prepare(tmp_path, like, server, sources=like.sources(), mirror=f"{server.url}/served/")
    assert sorted(r[1] for r in server.gets()) == sorted(
        f"/served/{name}" for name in ("lvis_v1_train.json.zip", "lvis_v1_val.json.zip", "train2017.zip", "val2017.zip"))
    assert summary["archives"]["val2017.zip"]["url"] == f"{server.url}/served/val2017.zip"


def test_link_coco_links_the_folders_instead_of_downloading(tmp_path, like, like_server):
    existing = tmp_path / "existing_coco"
    for rel in like.tree["coco"]:
        (existing / rel).parent.mkdir(parents=True, exist_ok=True)
        (existing / rel).write_bytes(b"jpeg")
    summary = _prepare(tmp_path, like, like_server, link_coco=existing)
    assert sorted(r[1] for r in like_server.gets()) == ["/lvis_v1_train.json.zip", "/lvis_v1_val.json.zip"]
    for folder in ("train2017", "val2017"):
        link = tmp_path / "coco" / folder
        assert link.is_symlink() and link.resolve() == (existing / folder).resolve()
        assert summary["archives"][f"{folder}.zip"]["status"] == "linked"
    assert summary["coco"] == {"mode": "linked", "target": str(existing.resolve())}

    # Pointing coco_dir at the existing copy uses it in place.
    in_place = _prepare(tmp_path, like, like_server, coco_dir=existing, link_coco=existing)
    assert in_place["coco"]["mode"] == "in place" and in_place["image_root"] == str(existing)
    assert not any(p.is_symlink() for p in existing.iterdir())


def test_link_coco_says_what_is_missing(tmp_path, like, like_server):
    existing = tmp_path / "existing_coco"
    (existing / "train2017").mkdir(parents=True)
    (existing / "train2017" / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(MissingFileError) as err:
        _prepare(tmp_path, like, like_server, link_coco=existing)
    assert str(existing) in str(err.value) and "val2017/" in str(err.value)
    (existing / "val2017").mkdir()
    with pytest.raises(MissingFileError, match="empty"):
        _prepare(tmp_path, like, like_server, link_coco=existing)
    with pytest.raises(MissingFileError, match="not a folder"):
        _prepare(tmp_path, like, like_server, link_coco=tmp_path / "nowhere")
    assert like_server.requests == []


def test_link_coco_does_not_delete_a_real_folder_in_the_way(tmp_path, like, like_server):
    existing = tmp_path / "existing_coco"
    for folder in ("train2017", "val2017"):
        (existing / folder).mkdir(parents=True)
        (existing / folder / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    with pytest.raises(LayoutError, match="not a link"):
        _prepare(tmp_path, like, like_server, link_coco=existing)
    assert (tmp_path / "coco" / "train2017").is_dir()


def test_disk_space_is_checked_before_any_request(tmp_path, like, like_server):
    with pytest.raises(DiskSpaceError) as err:
        _prepare(tmp_path, like, like_server, free_space=lambda path: 1000)
    message = str(err.value)
    assert "need" in message and "1.0 kB available" in message and "train2017.zip" in message
    assert like_server.requests == []


def test_unknown_sizes_are_asked_with_head_for_the_disk_check(tmp_path, like, like_server):
    sources = {n: dataclasses.replace(s, size=None) for n, s in like.sources(like_server.url).items()}
    names = ["lvis_v1_train.json.zip", "lvis_v1_val.json.zip", "train2017.zip", "val2017.zip"]
    need = sum(like.entries[n]["size"] * (1 + sources[n].unpacked_ratio) for n in names)
    with pytest.raises(DiskSpaceError):
        _prepare(tmp_path, like, like_server, sources=sources, free_space=lambda path: int(need) - 10)
    assert sorted(r[1] for r in like_server.requests if r[0] == "HEAD") == [f"/{n}" for n in sorted(names)]
    assert like_server.gets() == []
    _prepare(tmp_path, like, like_server, sources=sources, free_space=lambda path: int(need) + 10)
    assert (tmp_path / "lvis" / "lvis_v1_val.json").is_file()


def test_interrupted_prepare_continues_where_it_stopped(tmp_path, like, like_server):
    # 40,000 bytes arrive, then the server goes silent for good.
    like_server.stall_once_after["/train2017.zip"] = 40_000
    like_server.stall.add("/train2017.zip")
    like_server.stall_s = 5.0
    with pytest.raises(DownloadError, match="40000 bytes kept in train2017.zip.part, run again to resume"):
        _prepare(tmp_path, like, like_server, retries=0, timeout=0.3)
    like_server.stall.clear()
    assert partial_path(tmp_path / "downloads" / "train2017.zip").stat().st_size == 40_000
    assert not (tmp_path / "coco" / "train2017").exists()
    before = len(like_server.gets())
    summary = _prepare(tmp_path, like, like_server)
    assert [r[1:] for r in like_server.gets()[before:]] == [("/train2017.zip", "bytes=40000-"), ("/val2017.zip", None)]
    assert summary["archives"]["train2017.zip"]["resumed"]
    assert summary["archives"]["lvis_v1_train.json.zip"]["status"] == "present"


def test_corrupt_archive_in_prepare_is_removed_and_refetched_next_time(tmp_path, like, like_server):
    # Without pinned checksums the member CRCs are what catch the damage.
    sources = {n: dataclasses.replace(s, sha256=None, md5=None) for n, s in like.sources(like_server.url).items()}
    blob = like.archives["val2017.zip"].read_bytes()
    member = zipfile.ZipFile(like.archives["val2017.zip"]).namelist()[1]
    needle = zipfile.ZipFile(like.archives["val2017.zip"]).read(member)
    like_server.replace["/val2017.zip"] = _flip_inside(blob, needle)
    with pytest.raises(CorruptArchiveError) as err:
        _prepare(tmp_path, like, like_server, sources=sources)
    assert "val2017.zip" in str(err.value) and member in str(err.value)
    assert not (tmp_path / "downloads" / "val2017.zip").exists()
    assert not (tmp_path / "coco" / "val2017").exists()
    assert not marker_path(tmp_path / "coco", "val2017.zip").exists()
    del like_server.replace["/val2017.zip"]
    summary = _prepare(tmp_path, like, like_server, sources=sources)
    assert summary["archives"]["val2017.zip"]["status"] == "downloaded"
    assert summary["archives"]["train2017.zip"]["status"] == "present"


def test_lost_folder_is_unpacked_again_from_the_kept_archive(tmp_path, like, like_server):
    _prepare(tmp_path, like, like_server)
    for path in (tmp_path / "coco" / "val2017").iterdir():
        path.unlink()
    (tmp_path / "coco" / "val2017").rmdir()
    before = list(like_server.requests)
    summary = _prepare(tmp_path, like, like_server)
    assert like_server.requests == before
    assert summary["archives"]["val2017.zip"]["status"] == "reused"
    assert len(list((tmp_path / "coco" / "val2017").iterdir())) == sum(
        rel.startswith("val2017/") for rel in like.tree["coco"])


def test_keep_archives_false_frees_the_downloads(tmp_path, like, like_server):
    _prepare(tmp_path, like, like_server, keep_archives=False)
    assert list((tmp_path / "downloads").iterdir()) == []
    before = list(like_server.requests)
    _prepare(tmp_path, like, like_server, keep_archives=False)
    assert like_server.requests == before


def test_prepare_rejects_bad_settings(tmp_path, like, like_server):
    with pytest.raises(SourceError, match="v2"):
        _prepare(tmp_path, like, like_server, version="v2")
    with pytest.raises(SourceError, match="splits"):
        _prepare(tmp_path, like, like_server, splits=("test",))
    with pytest.raises(SourceError, match="mirror"):
        _prepare(tmp_path, like, like_server, mirror="ftp://example.org/lvis")
    with pytest.raises(SourceError, match="no entry 'val2017.zip'"):
        _prepare(tmp_path, like, like_server,
                 sources={n: s for n, s in like.sources(like_server.url).items() if n != "val2017.zip"})
    assert like_server.requests == []


# --------------------------------------------------------------------------- the manifest


def test_official_addresses_are_those_of_the_reference_readme():
    lvis = "https://s3-us-west-2.amazonaws.com/dl.fbaipublicfiles.com/LVIS"
    assert {n: s.url for n, s in lvis_sources.OFFICIAL.items()} == {
        "lvis_v1_train.json.zip": f"{lvis}/lvis_v1_train.json.zip",
        "lvis_v1_val.json.zip": f"{lvis}/lvis_v1_val.json.zip",
        "lvis_v0.5_train.json.zip": f"{lvis}/lvis_v0.5_train.json.zip",
        "lvis_v0.5_val.json.zip": f"{lvis}/lvis_v0.5_val.json.zip",
        "train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
        "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip",
    }
    coco_train = lvis_sources.OFFICIAL["train2017.zip"]
    assert coco_train.size == 19_336_861_798 and coco_train.contents == ("train2017",)
    assert lvis_sources.OFFICIAL["lvis_v0.5_train.json.zip"].sha256 is None  # no public pin found


def test_which_archives_each_version_needs():
    assert lvis_sources.archives_for("v1", ["val"]) == (["lvis_v1_val.json.zip"], ["train2017.zip", "val2017.zip"])
    assert lvis_sources.archives_for("lvis_v0.5", ["train"]) == (["lvis_v0.5_train.json.zip"], ["train2017.zip"])
    assert lvis_sources.archives_for("0.5", ["val", "train"])[0] == ["lvis_v0.5_train.json.zip", "lvis_v0.5_val.json.zip"]
    assert [lvis_sources.normalise_version(v) for v in ("v1", "lvis_v1", "1", "v1.0", "LVIS_V0.5")] == \
        ["v1", "v1", "v1", "v1", "v0.5"]


@pytest.mark.parametrize("change, problem", [
    ({"url": "https://x.org/other.zip"}, "must end with the file name"),
    ({"sha256": "ABC"}, "sha256"),
    ({"md5": "0" * 31}, "md5"),
    ({"size": 0}, "size"),
    ({"kind": "videos"}, "kind"),
    ({"contents": ()}, "contents"),
    ({"contents": ("../x",)}, "plain name"),
    ({"unpacked_ratio": 0.0}, "unpacked_ratio"),
    ({"filename": "a/b.zip", "url": "https://x.org/a/b.zip"}, "plain file name"),
])
def test_manifest_entries_are_checked_at_construction(change, problem):
    fields = dict(filename="a.zip", url="https://x.org/a.zip", kind="images", contents=("a",))
    with pytest.raises(SourceError, match=problem):
        ArchiveSource(**{**fields, **change})


# --------------------------------------------------------------------------- the LVIS-like builder


def test_lvis_like_has_the_official_layouts(like):
    assert sorted(like.archives) == sorted(lvis_sources.OFFICIAL)
    v1, v05 = like.annotations["v1"], like.annotations["v0.5"]
    for record in v1["train"]["images"] + v1["val"]["images"]:
        assert "file_name" not in record and record["coco_url"].startswith("http://images.cocodataset.org/")
        assert {"neg_category_ids", "not_exhaustive_category_ids", "height", "width"} <= set(record)
    val_folders = {image_relative_path(r).split("/")[0] for r in v1["val"]["images"]}
    assert val_folders == {"train2017", "val2017"}  # LVIS v1 val draws from both COCO splits
    assert all(r["file_name"].startswith(("COCO_train2014_", "COCO_val2014_")) for r in v05["train"]["images"])
    assert {image_relative_path(r).split("/")[0] for r in v05["val"]["images"]} == {"val2017"}
    train_counts = [(c["image_count"], c["instance_count"]) for c in v1["train"]["categories"]]
    assert [(c["image_count"], c["instance_count"]) for c in v1["val"]["categories"]] == train_counts
    assert all(n >= 1 for n, _ in train_counts)  # every class is in train
    assert [c["frequency"] for c in v1["train"]["categories"]] == ["f", "f", "c", "c", "r", "r"]
    for ann in v1["train"]["annotations"]:
        x, y, w, h = ann["bbox"]
        xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
        assert (min(xs), min(ys)) == (x, y) and 0 < ann["area"] <= w * h + 1e-6
    # The archives hold exactly the tree, named as the official ones.
    names = [n for a in ("train2017.zip", "val2017.zip") for n in zipfile.ZipFile(like.archives[a]).namelist()]
    assert sorted(n for n in names if not n.endswith("/")) == like.tree["coco"]
    assert like.entries["train2017.zip"]["sha256"] == hashlib.sha256(like.archives["train2017.zip"].read_bytes()).hexdigest()


def test_lvis_like_loads_in_the_official_lvis_api(tmp_path, like, like_server):
    from lvis import LVIS

    _prepare(tmp_path, like, like_server, version="v0.5", splits=("val",))
    api = LVIS(str(tmp_path / "lvis" / "lvis_v0.5_val.json"))
    ann = api.load_anns(api.get_ann_ids())[0]
    mask = api.ann_to_mask(ann)
    assert mask.shape == (72, 96) and abs(int(mask.sum()) - ann["area"]) <= 0.25 * ann["area"] + 40


def test_lvis_like_is_deterministic(tmp_path):
    first = build_lvis_like(tmp_path / "a")
    second = build_lvis_like(tmp_path / "b")
    assert {n: e["sha256"] for n, e in first.entries.items()} == {n: e["sha256"] for n, e in second.entries.items()}
    assert os.listdir(first.served_dir) and sorted(os.listdir(first.served_dir)) == sorted(first.archives)
