"""Fetch, verify and unpack the LVIS annotation and COCO 2017 image archives.

Three layers, each usable alone:

- :func:`download_file`: one URL to one file. The bytes go to ``<file>.part``; an
  interrupted transfer continues with an HTTP Range request, and a server that ignores
  Range is read again from byte 0. The file gets its final name only once its size is
  what the server announced (and the manifest, when pinned) and its pinned checksums
  match, so a file under its final name is a finished one.
- :func:`extract_zip`: one archive into a folder, through a temporary folder beside the
  target and a rename, checking every member's CRC on the way. A marker
  ``.<archive>.complete`` then records what was unpacked from which archive; without it
  the unpacked entries are not trusted and are unpacked again.
- :func:`prepare_lvis`: the whole data step for one LVIS version, from the official
  addresses (:mod:`bacl.data.lvis_sources`), a mirror, or an existing COCO folder.

Standard-library HTTP (``urllib.request``) only: timeouts on every socket operation and
a bounded number of attempts in a row without progress.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import math
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping

from tqdm import tqdm

from ..atomic_io import atomic_write_json, fsync_dir
from ..errors import BaclError, MissingFileError
from . import lvis_sources
from .lvis_sources import ArchiveSource

logger = logging.getLogger(__name__)

#: ``free_space(path) -> bytes`` free on the filesystem that holds (or will hold) ``path``.
FreeSpace = Callable[[Path], int]

CHUNK_BYTES = 1 << 20
USER_AGENT = "bacl-data-download"
MARKER_SUFFIX = ".complete"
PART_SUFFIX = ".part"
# Answers worth asking again: a busy server or a failing proxy, not "no such file".
_RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_DISK_FULL = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code)
_MAX_WAIT_S = 60.0


class DownloadError(BaclError, OSError):
    """A transfer that failed; the message names the URL and the cause in one line."""


class CorruptArchiveError(BaclError, ValueError):
    """An archive that failed a check (size, checksum, a member's CRC); it has been removed."""


class DiskSpaceError(BaclError, OSError):
    """Not enough free disk space; the message says how much is needed and how much is free."""


class LayoutError(BaclError, FileExistsError):
    """Something already in the way of the dataset layout (a folder where a link should go)."""


# --------------------------------------------------------------------------- disk space


def disk_free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the filesystem that holds ``path``, or its nearest existing parent."""
    return shutil.disk_usage(_existing_ancestor(Path(path))).free


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _human(num_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} bytes"


def _is_disk_full(err: OSError) -> bool:
    return err.errno in _DISK_FULL


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_file` did.

    Attributes:
        path: the verified file.
        size: its size in bytes.
        sha256: its SHA-256, lowercase hex.
        fetched_bytes: bytes received over the network by this call (0 when the file was
            already there).
        requests: HTTP requests this call made.
        resumed: a partial file was continued with a Range request.
        restarted: the server ignored a Range request and the file was read from byte 0.
    """

    path: Path
    size: int
    sha256: str
    fetched_bytes: int
    requests: int
    resumed: bool
    restarted: bool


def partial_path(dest: str | os.PathLike) -> Path:
    """Where :func:`download_file` keeps the bytes of ``dest`` until it is verified."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    retry_wait: float = 2.0,
    progress: bool = True,
    free_space: FreeSpace = disk_free_bytes,
) -> DownloadResult:
    """Fetch ``url`` into ``dest``, resuming a partial download, and verify it.

    A file already at ``dest`` is checked (size, pinned checksums) and kept without any
    network request when it passes; one that fails is fetched again.

    Args:
        expected_size: bytes the file must have; a server announcing another size is
            refused before anything is transferred.
        sha256, md5: pinned lowercase hex digests, checked once the file is complete (MD5
            only when no SHA-256 is given).
        timeout: seconds a connection or a read may wait for data.
        retries: attempts allowed in a row that make no progress (connection refused,
            timeout, HTTP 5xx); an attempt that grows the partial file resets the count.
        retry_wait: seconds before the first repeat; doubles with each failure in a row.
        progress: show a progress bar (bytes, rate, time left).
        free_space: free bytes at a path (injectable for tests).

    Raises:
        DownloadError: HTTP 4xx, or the attempts ran out (the partial file is kept for
            the next run).
        CorruptArchiveError: wrong size or checksum (the download is removed).
        DiskSpaceError: less free space than the bytes still to come, or the disk filled up.
    """
    _check_transfer_args(timeout=timeout, retries=retries, retry_wait=retry_wait)
    if expected_size is not None and (type(expected_size) is not int or expected_size < 0):
        raise ValueError(f"expected_size must be a non-negative integer or None, got {expected_size!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        problem, digest = _verify(dest, expected_size=expected_size, sha256=sha256, md5=md5, progress=progress)
        if problem is None:
            logger.info("%s is already here and verified; not fetching it", dest)
            return DownloadResult(path=dest, size=dest.stat().st_size, sha256=digest, fetched_bytes=0,
                                  requests=0, resumed=False, restarted=False)
        logger.warning("%s: %s; fetching it again", dest, problem)
        dest.unlink()
    part = partial_path(dest)
    stats = _transfer(url, part, expected_size=expected_size, timeout=timeout, retries=retries,
                      retry_wait=retry_wait, progress=progress, free_space=free_space, label=dest.name)
    problem, digest = _verify(part, expected_size=expected_size, sha256=sha256, md5=md5, progress=progress,
                              label=dest.name)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise CorruptArchiveError(
            f"{dest.name} (from {url}): {problem}; the download was removed, run again to fetch it anew"
        )
    _fsync_file(part)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return DownloadResult(path=dest, size=dest.stat().st_size, sha256=digest, fetched_bytes=stats.fetched,
                          requests=stats.requests, resumed=stats.resumed, restarted=stats.restarted)


def remote_size(
    url: str, *, timeout: float = 60.0, retries: int = 5, retry_wait: float = 2.0
) -> int | None:
    """The size the server announces for ``url`` (a HEAD request); None when it does not say.

    Raises :class:`DownloadError` as :func:`download_file` does (HTTP 4xx, attempts run out).
    """
    _check_transfer_args(timeout=timeout, retries=retries, retry_wait=retry_wait)
    failures = 0
    while True:
        request = urllib.request.Request(url, method="HEAD", headers=_headers())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _content_length(response.headers)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code in (405, 501):  # HEAD not supported: the GET will tell
                return None
            if err.code not in _RETRYABLE_HTTP:
                raise DownloadError(_http_message(url, err.code, err.reason)) from None
            error = f"HTTP {err.code} {err.reason}"
        except (OSError, http.client.HTTPException) as err:
            error = _describe(err, url, timeout)
        failures += 1
        if failures > retries:
            raise DownloadError(f"{url}: {error} ({failures} failed attempts)")
        wait = min(retry_wait * 2 ** (failures - 1), _MAX_WAIT_S)
        logger.warning("%s: %s; asking again in %g s", url, error, wait)
        time.sleep(wait)


@dataclass
class _Stats:
    requests: int = 0
    fetched: int = 0
    resumed: bool = False
    restarted: bool = False


@dataclass
class _Attempt:
    done: bool = False
    received: int = 0
    error: str = ""


def _check_transfer_args(*, timeout: float, retries: int, retry_wait: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if not retry_wait >= 0:
        raise ValueError(f"retry_wait must be >= 0 seconds, got {retry_wait!r}")


def _headers() -> dict[str, str]:
    # identity: a compressed body would make sizes and ranges refer to other bytes.
    return {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}


def _transfer(
    url: str, part: Path, *, expected_size: int | None, timeout: float, retries: int,
    retry_wait: float, progress: bool, free_space: FreeSpace, label: str,
) -> _Stats:
    stats = _Stats()
    failures = 0
    bar = tqdm(total=expected_size, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
               disable=not progress, dynamic_ncols=True, leave=True)
    try:
        while True:
            offset = part.stat().st_size if part.is_file() else 0
            if expected_size is not None and offset > expected_size:
                logger.warning("%s holds %d bytes, more than the %d expected; starting again",
                               part, offset, expected_size)
                part.unlink()
                offset = 0
            if expected_size is not None and offset == expected_size and offset > 0:
                return stats
            attempt = _attempt(url, part, offset, expected_size=expected_size, timeout=timeout,
                               free_space=free_space, bar=bar, stats=stats)
            if attempt.done:
                return stats
            # Progress means the partial file grew: a server that ignores Range and always
            # breaks off at the same byte must not keep the loop alive.
            grew = (part.stat().st_size if part.is_file() else 0) > offset
            failures = 0 if grew else failures + 1
            if failures > retries:
                kept = part.stat().st_size if part.is_file() else 0
                tail = f"; {kept} bytes kept in {part.name}, run again to resume" if kept else ""
                raise DownloadError(f"{url}: {attempt.error} ({failures} failed attempts{tail})")
            wait = min(retry_wait * 2 ** (failures - 1), _MAX_WAIT_S) if failures else 0.0
            logger.warning("%s: %s; %s", url, attempt.error,
                           f"trying again in {wait:g} s" if failures else "continuing from there")
            time.sleep(wait)
    finally:
        bar.close()


def _attempt(
    url: str, part: Path, offset: int, *, expected_size: int | None, timeout: float,
    free_space: FreeSpace, bar: tqdm, stats: _Stats,
) -> _Attempt:
    """One request: continue ``part`` from ``offset``; fatal problems raise."""
    headers = _headers()
    if offset:
        headers["Range"] = f"bytes={offset}-"
    stats.requests += 1
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        content_range = err.headers.get("Content-Range") if err.headers else None
        err.close()
        if err.code == 416 and offset:
            total = _parse_content_range(content_range, url)[1] if content_range else None
            if total == offset and expected_size in (None, offset):
                return _Attempt(done=True)  # the partial file was complete already
            logger.warning("%s: the server will not continue %s from byte %d; starting again from zero",
                           url, part.name, offset)
            part.unlink(missing_ok=True)
            return _Attempt(error="HTTP 416 Range Not Satisfiable")
        if err.code in _RETRYABLE_HTTP:
            return _Attempt(error=f"HTTP {err.code} {err.reason}")
        raise DownloadError(_http_message(url, err.code, err.reason)) from None
    except (OSError, http.client.HTTPException) as err:
        return _Attempt(error=_describe(err, url, timeout))

    with response:
        if offset and response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"), url)
            if start != offset:
                raise DownloadError(f"{url}: asked for the bytes from {offset}, the server sent them from {start}")
            stats.resumed = True
        else:
            if offset:
                logger.warning("%s: the server ignored the Range request; reading %s again from byte 0",
                               url, part.name.removesuffix(PART_SUFFIX))
                stats.restarted = True
                offset = 0
            total = _content_length(response.headers)
        if total is not None and expected_size is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise CorruptArchiveError(
                f"{url}: the server announces {total} bytes, the manifest expects {expected_size}; "
                "not fetching a different file (is the mirror serving another version?)"
            )
        known_total = total if total is not None else expected_size
        if known_total is not None:
            needed, free = known_total - offset, free_space(part.parent)
            if needed > free:
                raise DiskSpaceError(
                    f"{part.parent}: {part.name.removesuffix(PART_SUFFIX)} needs {_human(needed)} more, "
                    f"{_human(free)} free"
                )
        bar.reset(total=known_total)
        bar.initial = bar.n = bar.last_print_n = offset
        bar.refresh()
        received, error = _receive(response, part, offset, bar=bar, url=url, timeout=timeout)
        stats.fetched += received
    end = offset + received
    if error:
        return _Attempt(received=received, error=error)
    if total is not None and end < total:
        return _Attempt(received=received, error=f"connection closed after {end} of {total} bytes")
    if total is not None and end > total:
        part.unlink(missing_ok=True)
        raise CorruptArchiveError(f"{url}: received {end} bytes, more than the {total} the server announced")
    return _Attempt(done=True, received=received)


def _receive(response, part: Path, offset: int, *, bar: tqdm, url: str, timeout: float) -> tuple[int, str]:
    """Append the body to ``part`` at ``offset``: (bytes received, read error or "")."""
    received, error = 0, ""
    try:
        with open(part, "r+b" if offset else "wb") as handle:
            if offset:
                handle.seek(offset)
                handle.truncate()
            # read1: whatever has arrived (up to a chunk), so a stall or cut keeps those bytes.
            read = getattr(response, "read1", response.read)
            while True:
                try:
                    chunk = read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as err:
                    error = _describe(err, url, timeout)
                    break
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except OSError as err:
        if _is_disk_full(err):
            raise DiskSpaceError(
                f"writing {part}: the disk is full; the bytes so far are kept, "
                "free some space and run again to resume"
            ) from None
        raise
    return received, error


def _content_length(headers) -> int | None:
    value = (headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _parse_content_range(value: str | None, url: str) -> tuple[int, int | None]:
    """``"bytes 100-999/1000"`` -> ``(100, 1000)``; ``"bytes */1000"`` -> ``(-1, 1000)``."""
    try:
        unit, spec = (value or "").strip().split(" ", 1)
        span, total_text = spec.split("/", 1)
        total = None if total_text.strip() == "*" else int(total_text)
        start = -1 if span.strip() == "*" else int(span.split("-", 1)[0])
        if unit.lower() != "bytes":
            raise ValueError(unit)
    except ValueError:
        raise DownloadError(f"{url}: the server sent a malformed Content-Range {value!r}") from None
    return start, total


def _http_message(url: str, code: int, reason: str) -> str:
    hint = {
        403: " (access denied; S3 answers this for a file that does not exist)",
        404: " (no such file at this address; check the URL or the mirror)",
    }.get(code, "")
    return f"{url}: HTTP {code} {reason}{hint}"


def _describe(err: BaseException, url: str, timeout: float) -> str:
    """One line for a connection or read failure."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        if not isinstance(err.reason, BaseException):
            return str(err.reason)
        err = err.reason
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused by {parts.hostname}:{port}"
    if isinstance(err, TimeoutError):  # socket.timeout is TimeoutError
        return f"no data for {timeout:g} s (timeout)"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve host {parts.hostname!r} ({err.strerror})"
    if isinstance(err, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(err, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed before the end of the data"
    if isinstance(err, ssl.SSLError):
        return f"TLS error ({err.reason or err})"
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror} ({parts.hostname}:{port})"
    return f"{type(err).__name__}: {err}"


def _verify(
    path: Path, *, expected_size: int | None, sha256: str | None, md5: str | None,
    progress: bool, label: str | None = None,
) -> tuple[str | None, str]:
    """(problem or None, SHA-256 of ``path``); the digests are only computed at the right size."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"{size} bytes, expected {expected_size}", ""
    # MD5 only when no SHA-256 is pinned: SHA-256 is the stronger check, and hashing both would
    # almost triple the time spent verifying (19.3 GB for COCO train2017).
    with_md5 = md5 is not None and sha256 is None
    got_sha256, got_md5 = _digests(path, with_md5=with_md5, progress=progress, label=label or path.name)
    if sha256 is not None and got_sha256 != sha256.lower():
        return f"SHA-256 {got_sha256} does not match the pinned {sha256}", got_sha256
    if with_md5 and got_md5 != md5.lower():
        return f"MD5 {got_md5} does not match the pinned {md5}", got_sha256
    return None, got_sha256


def _digests(path: Path, *, with_md5: bool, progress: bool, label: str) -> tuple[str, str | None]:
    sha = hashlib.sha256()
    md = hashlib.md5(usedforsecurity=False) if with_md5 else None
    with open(path, "rb") as handle, tqdm(
        total=path.stat().st_size, desc=f"verifying {label}", unit="B", unit_scale=True,
        unit_divisor=1024, disable=not progress, dynamic_ncols=True, leave=False,
    ) as bar:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            sha.update(block)
            if md is not None:
                md.update(block)
            bar.update(len(block))
    return sha.hexdigest(), (md.hexdigest() if md is not None else None)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------- one archive


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract_zip` placed.

    Attributes:
        dest_dir: the folder the entries were placed in.
        entries: the top-level names placed there (files or folders).
        members: archive members unpacked (files and folder records).
        unpacked_bytes: bytes unpacked.
        marker: the marker file written last.
    """

    dest_dir: Path
    entries: tuple[str, ...]
    members: int
    unpacked_bytes: int
    marker: Path


class _BadArchive(Exception):
    """Internal: what is wrong with an archive, before it is removed."""


def marker_path(dest_dir: str | os.PathLike, archive_name: str) -> Path:
    """The marker that says ``archive_name`` was completely unpacked into ``dest_dir``."""
    return Path(dest_dir) / f".{archive_name}{MARKER_SUFFIX}"


def read_marker(dest_dir: str | os.PathLike, archive_name: str) -> dict[str, Any] | None:
    """The marker of a finished extraction, or None when it cannot be trusted.

    None when there is no marker, it cannot be read, or an entry it lists is gone (or, for
    a file, has another size than when it was unpacked).
    """
    dest_dir = Path(dest_dir)
    try:
        data = json.loads(marker_path(dest_dir, archive_name).read_text(encoding="utf-8"))
        entries = data["entries"]
        if not isinstance(entries, dict) or not entries:
            return None
        for name, info in entries.items():
            target = dest_dir / name
            if info["type"] == "file":
                if not target.is_file() or target.stat().st_size != info["bytes"]:
                    return None
            elif not target.is_dir():
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data


def extract_zip(
    archive: str | os.PathLike,
    dest_dir: str | os.PathLike,
    *,
    entries: Iterable[str] | None = None,
    archive_sha256: str | None = None,
    progress: bool = True,
    free_space: FreeSpace = disk_free_bytes,
    remove_corrupt: bool = True,
) -> ExtractResult:
    """Unpack ``archive`` into ``dest_dir``; each top-level entry appears there only complete.

    Members are unpacked into ``dest_dir/.<archive>.extracting-<id>/`` and every member's
    CRC is checked as it is read; only then are the top-level entries renamed into
    ``dest_dir`` (an entry already there is replaced) and the marker written. Leftovers of
    an interrupted earlier extraction of the same archive are removed first.

    Args:
        entries: the top-level names to unpack (e.g. ``["train2017"]``); the archive must
            hold them all. None unpacks everything.
        archive_sha256: recorded in the marker.
        remove_corrupt: delete an archive that fails a check (it cannot be used again).

    Raises:
        CorruptArchiveError: not a zip, a bad CRC or unreadable member, a member that would
            land outside ``dest_dir``, or a missing entry; nothing is left in ``dest_dir``.
        DiskSpaceError: the unpacked size (from the archive's own index) exceeds the free space.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise MissingFileError(f"archive {archive} does not exist")
    dest_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(dest_dir, archive.name)
    marker_path(dest_dir, archive.name).unlink(missing_ok=True)
    wanted = None if entries is None else list(entries)
    tmp = dest_dir / f".{archive.name}.extracting-{uuid.uuid4().hex[:12]}"
    problem = None
    try:
        with zipfile.ZipFile(archive) as zf:
            members, chosen = _plan_members(zf, wanted)
            total = sum(info.file_size for info in members)
            free = free_space(dest_dir)
            if total > free:
                raise DiskSpaceError(
                    f"{dest_dir}: unpacking {archive.name} needs {_human(total)}, {_human(free)} free"
                )
            tmp.mkdir()
            _unpack(zf, members, tmp, progress=progress, label=archive.name, total=total)
    except (_BadArchive, zipfile.BadZipFile, zlib.error, EOFError) as err:
        problem = str(err) or type(err).__name__
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if problem is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        outcome = f"nothing was unpacked into {dest_dir}"
        if remove_corrupt:
            archive.unlink(missing_ok=True)
            outcome = f"the archive was removed and {outcome}; run again to fetch it anew"
        raise CorruptArchiveError(f"{archive.name}: corrupt archive ({problem}); {outcome}")
    placed = _move_into_place(tmp, dest_dir, chosen, archive.name)
    record = {
        "archive": archive.name,
        "archive_bytes": archive.stat().st_size,
        "archive_sha256": archive_sha256,
        "entries": placed,
        "members": len(members),
        "unpacked_bytes": total,
    }
    marker = marker_path(dest_dir, archive.name)
    atomic_write_json(marker, record, indent=1, sort_keys=True)
    logger.info("unpacked %s into %s (%d members, %s)", archive.name, dest_dir, len(members), _human(total))
    return ExtractResult(dest_dir=dest_dir, entries=tuple(chosen), members=len(members),
                         unpacked_bytes=total, marker=marker)


def _plan_members(zf: zipfile.ZipFile, wanted: list[str] | None) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """The members to unpack and the top-level entries they form; unsafe names raise."""
    by_top: dict[str, list[zipfile.ZipInfo]] = {}
    for info in zf.infolist():
        name = info.filename
        parts = PurePosixPath(name).parts
        if (not parts or name.startswith("/") or "\\" in name or ".." in parts
                or ":" in parts[0] or parts[0] == "."):
            raise _BadArchive(f"member {name!r} would be unpacked outside the target folder")
        by_top.setdefault(parts[0], []).append(info)
    if not by_top:
        raise _BadArchive("the archive holds no members")
    if wanted is None:
        chosen = sorted(by_top)
    else:
        missing = [e for e in wanted if e not in by_top]
        if missing:
            shown = sorted(by_top)[:5]
            raise _BadArchive(f"it holds {shown}{' ...' if len(by_top) > 5 else ''}, not {missing}")
        chosen = list(dict.fromkeys(wanted))
        ignored = sorted(set(by_top) - set(chosen))
        if ignored:
            logger.info("%s: not unpacking %s", zf.filename, ignored)
    return [info for entry in chosen for info in by_top[entry]], chosen


def _unpack(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: Path, *,
            progress: bool, label: str, total: int) -> None:
    with tqdm(total=total, desc=f"unpacking {label}", unit="B", unit_scale=True, unit_divisor=1024,
              disable=not progress, dynamic_ncols=True, leave=True) as bar:
        for info in members:
            target = root.joinpath(*PurePosixPath(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Reading a member to its end checks its CRC (zipfile raises BadZipFile).
                with zf.open(info) as src, open(target, "wb") as dst:
                    for block in iter(lambda: src.read(CHUNK_BYTES), b""):
                        dst.write(block)
                        bar.update(len(block))
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise _BadArchive(f"member {info.filename}: {err or type(err).__name__}") from None
            except OSError as err:
                if _is_disk_full(err):
                    raise DiskSpaceError(f"unpacking {label} into {root.parent}: the disk is full") from None
                raise


def _move_into_place(tmp: Path, dest_dir: Path, chosen: list[str], archive_name: str) -> dict[str, Any]:
    """Rename each unpacked entry over its final place; returns the marker's entry records."""
    placed: dict[str, Any] = {}
    stale: list[Path] = []
    for entry in chosen:
        src, final = tmp / entry, dest_dir / entry
        if final.is_symlink():
            final.unlink()  # a link (e.g. to another COCO copy): drop the link, never its target
        elif final.is_dir():
            old = dest_dir / f".{archive_name}.replaced-{uuid.uuid4().hex[:12]}"
            os.replace(final, old)
            stale.append(old)
        os.replace(src, final)
        placed[entry] = ({"type": "file", "bytes": final.stat().st_size} if final.is_file()
                         else {"type": "folder"})
    fsync_dir(dest_dir)
    for old in stale:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return placed


def _remove_leftovers(dest_dir: Path, archive_name: str) -> None:
    prefixes = (f".{archive_name}.extracting-", f".{archive_name}.replaced-")
    for child in dest_dir.iterdir():
        if child.name.startswith(prefixes):
            logger.info("removing %s, left by an interrupted extraction", child)
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


# --------------------------------------------------------------------------- COCO folder


def link_coco_folders(
    link_coco: str | os.PathLike,
    coco_dir: str | os.PathLike,
    *,
    folders: Iterable[str] = lvis_sources.IMAGE_FOLDERS,
) -> dict[str, str]:
    """Make ``coco_dir/<folder>`` point at an existing COCO copy's ``<folder>`` (symlinks).

    When ``coco_dir`` is that copy, it is used in place. A link that points elsewhere is
    replaced; a real folder in the way is an error (nothing is deleted).

    Returns ``{"mode": "linked" | "in place", "target": <the existing COCO folder>}``.

    Raises:
        MissingFileError: ``link_coco`` is not a folder, or lacks one of ``folders``, or one
            of them is empty.
        LayoutError: ``coco_dir/<folder>`` exists and is not a link.
    """
    source = Path(link_coco).expanduser()
    folders = list(folders)
    wanted = ", ".join(f + "/" for f in folders)
    if not source.is_dir():
        raise MissingFileError(
            f"link_coco: {source} is not a folder (it should hold the COCO 2017 image folders {wanted})"
        )
    missing = [f for f in folders if not (source / f).is_dir()]
    if missing:
        raise MissingFileError(
            f"link_coco: {source} has no {', '.join(m + '/' for m in missing)} "
            f"(a COCO 2017 folder holds {wanted})"
        )
    for folder in folders:
        with os.scandir(source / folder) as it:
            if next(it, None) is None:
                raise MissingFileError(f"link_coco: {source / folder} is empty")
    coco_dir = Path(coco_dir)
    if coco_dir.exists() and coco_dir.resolve() == source.resolve():
        logger.info("using the COCO images in %s in place", source)
        return {"mode": "in place", "target": str(source.resolve())}
    coco_dir.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        link, target = coco_dir / folder, (source / folder).resolve()
        if link.exists() and link.resolve() == target:
            continue
        if link.is_symlink():
            tmp = coco_dir / f".{folder}.link-{uuid.uuid4().hex[:12]}"
            os.symlink(target, tmp, target_is_directory=True)
            os.replace(tmp, link)
        elif link.exists():
            raise LayoutError(
                f"{link} already exists and is not a link; move it away to link {target}, "
                "or drop link_coco to use it"
            )
        else:
            os.symlink(target, link, target_is_directory=True)
        logger.info("linked %s -> %s", link, target)
    return {"mode": "linked", "target": str(source.resolve())}


# --------------------------------------------------------------------------- the data step


@dataclass
class _Need:
    path: Path
    bytes: int = 0
    items: list[str] = field(default_factory=list)


def check_free_space(
    todo: Iterable[tuple[ArchiveSource, Path]],
    *,
    downloads_dir: str | os.PathLike,
    mirror: str | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    retry_wait: float = 2.0,
    free_space: FreeSpace = disk_free_bytes,
) -> dict[str, int]:
    """Refuse to start when the archives still to fetch and unpack would not fit.

    Each ``(source, dest_dir)`` needs its archive's missing bytes in ``downloads_dir``
    (the manifest's size, else the server's Content-Length from a HEAD request) and its
    estimated unpacked size in ``dest_dir``; folders on one filesystem add up.

    Returns ``{folder: bytes needed}`` per filesystem checked.

    Raises:
        DiskSpaceError: naming the folder, the bytes needed (and for what) and the bytes free.
    """
    downloads_dir = Path(downloads_dir)
    needs: dict[int, _Need] = {}

    def add(path: Path, num_bytes: int, what: str) -> None:
        device = os.stat(_existing_ancestor(path)).st_dev
        need = needs.setdefault(device, _Need(path=path))
        need.bytes += num_bytes
        need.items.append(what)

    for source, dest_dir in todo:
        archive = downloads_dir / source.filename
        if archive.is_file():
            size, to_fetch = archive.stat().st_size, 0
        else:
            size = source.size
            if size is None:
                size = remote_size(lvis_sources.resolve_url(source, mirror), timeout=timeout,
                                   retries=retries, retry_wait=retry_wait)
            part = partial_path(archive)
            have = part.stat().st_size if part.is_file() else 0
            to_fetch = max(size - have, 0) if size is not None else 0
        if size is None:
            logger.warning("%s: size unknown (the server does not say); not counted in the disk-space check",
                           source.filename)
            continue
        unpacked = math.ceil(size * source.unpacked_ratio)
        if to_fetch:
            add(downloads_dir, to_fetch, f"{source.filename} {_human(to_fetch)} to download")
        add(Path(dest_dir), unpacked, f"{source.filename} about {_human(unpacked)} unpacked")
    for need in needs.values():
        free = free_space(need.path)
        if need.bytes > free:
            raise DiskSpaceError(
                f"not enough free disk space on the filesystem of {need.path}: need {_human(need.bytes)} "
                f"({'; '.join(need.items)}), {_human(free)} available"
            )
    return {str(need.path): need.bytes for need in needs.values()}


def prepare_lvis(
    *,
    version: str,
    lvis_dir: str | os.PathLike,
    coco_dir: str | os.PathLike,
    downloads_dir: str | os.PathLike,
    mirror: str | None = None,
    link_coco: str | os.PathLike | None = None,
    splits: Iterable[str] = lvis_sources.SPLITS,
    sources: Mapping[str, ArchiveSource] | None = None,
    keep_archives: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 5,
    retry_wait: float = 2.0,
    free_space: FreeSpace = disk_free_bytes,
) -> dict[str, Any]:
    """Fetch, verify and lay out LVIS ``version`` where the LVIS presets read it.

    Layout: ``<lvis_dir>/lvis_<version>_<split>.json`` and ``<coco_dir>/train2017/``,
    ``<coco_dir>/val2017/`` (one COCO folder serves both LVIS versions). An archive whose
    unpacked entries carry a valid marker is skipped without any network request; an
    archive already complete in ``downloads_dir`` is verified and unpacked without being
    fetched again; a partial one is continued.

    Args:
        version: ``"v1"`` or ``"v0.5"`` (``"lvis_v1"``, ``"lvis_v0.5"`` too).
        mirror: base URL serving the archives under their official file names.
        link_coco: an existing folder with ``train2017/`` and ``val2017/``, linked instead
            of downloading the image archives.
        splits: the annotation splits wanted. LVIS v1 needs both COCO image folders for
            either split; v0.5 train needs ``train2017`` and v0.5 val ``val2017``.
        sources: the archive manifest (default :data:`lvis_sources.OFFICIAL`).
        keep_archives: keep the archives in ``downloads_dir`` once unpacked (False frees
            their space; a later run re-fetches only if an unpacked folder is lost).
        timeout, retries, retry_wait, progress, free_space: as in :func:`download_file`.

    Returns:
        A JSON-serialisable summary: ``version``, ``splits``, ``annotations``
        (``{split: path}``), ``image_root``, ``coco`` (how the images were provided),
        ``archives`` (``{file name: {"status", "url", "bytes", "sha256", ...}}`` with
        status ``present`` / ``downloaded`` / ``reused`` / ``linked``), and the totals
        ``downloaded_bytes`` and ``requests``.
    """
    version = lvis_sources.normalise_version(version)
    splits = lvis_sources.check_splits(splits)
    mirror = lvis_sources.check_mirror(mirror)
    manifest = lvis_sources.OFFICIAL if sources is None else sources
    lvis_dir, coco_dir, downloads_dir = Path(lvis_dir), Path(coco_dir), Path(downloads_dir)
    ann_names, image_names = lvis_sources.archives_for(version, splits)
    ann_sources = lvis_sources.select(manifest, ann_names)
    image_sources = lvis_sources.select(manifest, image_names)

    archives: dict[str, dict[str, Any]] = {}
    plan = [(source, lvis_dir) for source in ann_sources]
    if link_coco is None:
        plan += [(source, coco_dir) for source in image_sources]
        coco = {"mode": "downloaded", "target": str(coco_dir)}
    else:
        folders = [entry for source in image_sources for entry in source.contents]
        coco = link_coco_folders(link_coco, coco_dir, folders=folders)
        for source in image_sources:
            archives[source.filename] = {"status": "linked", "target": coco["target"]}

    todo = []
    for source, dest_dir in plan:
        marker = read_marker(dest_dir, source.filename)
        if marker is not None and source.sha256 not in (None, marker.get("archive_sha256")):
            logger.warning("%s was unpacked from another archive than the pinned one; redoing it", source.filename)
            marker = None
        if marker is None:
            todo.append((source, dest_dir))
        else:
            archives[source.filename] = {"status": "present", "bytes": marker.get("archive_bytes"),
                                         "sha256": marker.get("archive_sha256")}
    if todo:
        check_free_space(todo, downloads_dir=downloads_dir, mirror=mirror, timeout=timeout,
                         retries=retries, retry_wait=retry_wait, free_space=free_space)

    downloaded = requests = 0
    for source, dest_dir in todo:
        url = lvis_sources.resolve_url(source, mirror)
        tic = time.perf_counter()
        result = download_file(url, downloads_dir / source.filename, expected_size=source.size,
                               sha256=source.sha256, md5=source.md5, timeout=timeout, retries=retries,
                               retry_wait=retry_wait, progress=progress, free_space=free_space)
        extract_zip(result.path, dest_dir, entries=source.contents, archive_sha256=result.sha256,
                    progress=progress, free_space=free_space)
        if not keep_archives:
            result.path.unlink(missing_ok=True)
        downloaded += result.fetched_bytes
        requests += result.requests
        archives[source.filename] = {
            "status": "downloaded" if result.requests else "reused",
            "url": url, "bytes": result.size, "sha256": result.sha256,
            "fetched_bytes": result.fetched_bytes, "requests": result.requests,
            "resumed": result.resumed, "restarted": result.restarted,
        }
        logger.info("%s ready in %.1f s", source.filename, time.perf_counter() - tic)

    annotations = {split: lvis_dir / lvis_sources.annotation_file(version, split) for split in splits}
    for split, path in annotations.items():
        if not path.is_file():
            raise MissingFileError(f"{path} is missing after preparing LVIS {version} {split}")
    logger.info("LVIS %s ready: annotations in %s, images in %s (%s fetched in %d requests)",
                version, lvis_dir, coco_dir, _human(downloaded), requests)
    return {
        "version": version,
        "splits": list(splits),
        "annotations": {split: str(path) for split, path in annotations.items()},
        "image_root": str(coco_dir),
        "coco": coco,
        "archives": {name: archives[name] for name in sorted(archives)},
        "downloaded_bytes": downloaded,
        "requests": requests,
    }
