"""The official LVIS annotation and COCO 2017 image archives: where they are, what they hold.

The addresses are those the reference README lists (``Tianhao-Qi/BACL``, ``README.md``):
the LVIS annotation zips on ``dl.fbaipublicfiles.com`` (through its S3 path-style
address) and the COCO 2017 image zips on ``images.cocodataset.org`` (plain HTTP, as
published; the pinned checksums are what make that safe).

Sizes and checksums are pinned only where public code that downloads these very files
states them; each pin names its source. The others are None: the size then comes from
the server, and the archive is still checked by size and by the CRC of every member.

A mirror keeps the official file names: ``<mirror>/<file name>`` for every archive.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..errors import BaclError

VERSIONS = ("v0.5", "v1")
SPLITS = ("train", "val")
KINDS = ("annotations", "images")
# COCO 2017 image folders; LVIS v1 val draws its images from both.
IMAGE_FOLDERS = ("train2017", "val2017")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class SourceError(BaclError, ValueError):
    """A manifest entry, version, split or mirror address that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class ArchiveSource:
    """One archive to fetch and unpack.

    Attributes:
        filename: the archive's file name, e.g. ``"train2017.zip"``; also its name on a mirror.
        url: the official address; its last path component is ``filename``.
        kind: ``"annotations"`` (unpacked into the LVIS folder) or ``"images"`` (into the
            COCO folder).
        contents: the top-level entries the archive must hold, e.g. ``("train2017",)`` or
            ``("lvis_v1_train.json",)``; only these are unpacked.
        size: the archive's size in bytes, or None when not pinned.
        sha256, md5: pinned lowercase hex digests, or None.
        unpacked_ratio: unpacked bytes per archive byte, an estimate used only to check the
            free disk space before starting (the exact figure is read from the archive
            before unpacking it).
    """

    filename: str
    url: str
    kind: str
    contents: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    unpacked_ratio: float = 1.0

    def __post_init__(self) -> None:
        name = self.filename
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise SourceError(f"archive file name {name!r} must be a plain file name")
        if urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1] != name:
            raise SourceError(f"{name}: url {self.url!r} must end with the file name")
        if self.kind not in KINDS:
            raise SourceError(f"{name}: kind must be one of {list(KINDS)}, got {self.kind!r}")
        if not isinstance(self.contents, tuple) or not self.contents:
            raise SourceError(f"{name}: contents must be a non-empty tuple of entry names")
        for entry in self.contents:
            if not entry or "/" in entry or entry in (".", ".."):
                raise SourceError(f"{name}: content entry {entry!r} must be a plain name")
        if self.size is not None and (type(self.size) is not int or self.size <= 0):
            raise SourceError(f"{name}: size must be a positive integer or None, got {self.size!r}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise SourceError(f"{name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.md5 is not None and not _MD5.match(self.md5):
            raise SourceError(f"{name}: md5 must be 32 lowercase hex digits, got {self.md5!r}")
        if not self.unpacked_ratio > 0:
            raise SourceError(f"{name}: unpacked_ratio must be > 0, got {self.unpacked_ratio!r}")


_LVIS = "https://s3-us-west-2.amazonaws.com/dl.fbaipublicfiles.com/LVIS"
_COCO = "http://images.cocodataset.org/zips"
# Annotation JSON compresses about 3.1x (LVIS v1 val: 64,026,968 packed, 201,235,232
# unpacked); the estimate keeps a margin. COCO's JPEGs do not compress.
_JSON_RATIO = 3.5
_JPEG_RATIO = 1.02

# Pins. sizes and SHA-256: tensorflow/datasets, tensorflow_datasets/object_detection/lvis/
# checksums.tsv. MD5: ContinualAI/avalanche, avalanche/benchmarks/datasets/lvis_dataset/
# lvis_data.py (LVIS v1 and COCO), matching PaddlePaddle/PaddleDetection,
# ppdet/utils/download.py (COCO). No public source found for LVIS v0.5: left None.
OFFICIAL: dict[str, ArchiveSource] = {
    s.filename: s
    for s in (
        ArchiveSource(
            filename="lvis_v1_train.json.zip", url=f"{_LVIS}/lvis_v1_train.json.zip",
            kind="annotations", contents=("lvis_v1_train.json",), size=350_264_821,
            sha256="334a4caa374030a7817cf050364525e910f7960f9b6968cef47cffbf3893f8ba",
            md5="4410d837f71203af226950447ef9d422", unpacked_ratio=_JSON_RATIO,
        ),
        ArchiveSource(
            filename="lvis_v1_val.json.zip", url=f"{_LVIS}/lvis_v1_val.json.zip",
            kind="annotations", contents=("lvis_v1_val.json",), size=64_026_968,
            sha256="5cae9a3c79aadb667550c2b5dcf7f4d86e059a41ec91ef690225b667e28e9ba5",
            md5="87734a7f895990b9552075d7ce723e27", unpacked_ratio=_JSON_RATIO,
        ),
        ArchiveSource(
            filename="lvis_v0.5_train.json.zip", url=f"{_LVIS}/lvis_v0.5_train.json.zip",
            kind="annotations", contents=("lvis_v0.5_train.json",), unpacked_ratio=_JSON_RATIO,
        ),
        ArchiveSource(
            filename="lvis_v0.5_val.json.zip", url=f"{_LVIS}/lvis_v0.5_val.json.zip",
            kind="annotations", contents=("lvis_v0.5_val.json",), unpacked_ratio=_JSON_RATIO,
        ),
        ArchiveSource(
            filename="train2017.zip", url=f"{_COCO}/train2017.zip",
            kind="images", contents=("train2017",), size=19_336_861_798,
            sha256="69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929",
            md5="cced6f7f71b7629ddf16f17bbcfab6b2", unpacked_ratio=_JPEG_RATIO,
        ),
        ArchiveSource(
            filename="val2017.zip", url=f"{_COCO}/val2017.zip",
            kind="images", contents=("val2017",), size=815_585_330,
            sha256="4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",
            md5="442b8da7639aecaf257c1dceb8ba8c80", unpacked_ratio=_JPEG_RATIO,
        ),
    )
}


def normalise_version(version: str) -> str:
    """``"v1"``, ``"lvis_v1"``, ``"1"`` -> ``"v1"``; likewise for v0.5. Anything else raises."""
    text = str(version).strip().lower()
    text = text.removeprefix("lvis_").removeprefix("lvis")
    if not text.startswith("v"):
        text = "v" + text
    if text == "v1.0":
        text = "v1"
    if text not in VERSIONS:
        raise SourceError(f"LVIS version must be one of {list(VERSIONS)}, got {version!r}")
    return text


def check_splits(splits: Iterable[str]) -> tuple[str, ...]:
    """The requested splits in canonical order, without repeats; at least one."""
    wanted = list(splits) if not isinstance(splits, str) else [splits]
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown or not wanted:
        raise SourceError(f"splits must be a non-empty subset of {list(SPLITS)}, got {wanted!r}")
    return tuple(s for s in SPLITS if s in wanted)


def annotation_file(version: str, split: str) -> str:
    """The unpacked annotation file of one split, e.g. ``"lvis_v1_train.json"``."""
    return f"lvis_{normalise_version(version)}_{split}.json"


def archives_for(version: str, splits: Iterable[str]) -> tuple[list[str], list[str]]:
    """File names of the (annotation archives, image archives) that ``splits`` need.

    LVIS v1 val draws images from both COCO 2017 splits, so LVIS v1 always needs both
    image archives; LVIS v0.5 train uses ``train2017`` and v0.5 val ``val2017``.
    """
    version = normalise_version(version)
    splits = check_splits(splits)
    annotations = [annotation_file(version, s) + ".zip" for s in splits]
    if version == "v1":
        folders = list(IMAGE_FOLDERS)
    else:
        folders = [{"train": "train2017", "val": "val2017"}[s] for s in splits]
    return annotations, [f + ".zip" for f in folders]


def check_mirror(mirror: str | None) -> str | None:
    """A mirror base URL without its trailing slash; None stays None."""
    if mirror is None:
        return None
    parts = urllib.parse.urlsplit(str(mirror).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(
            f"mirror must be an http:// or https:// base URL such as "
            f"'https://mirror.example.org/lvis', got {mirror!r}"
        )
    if parts.query or parts.fragment:
        raise SourceError(f"mirror {mirror!r} must not carry a query or fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def resolve_url(source: ArchiveSource, mirror: str | None = None) -> str:
    """``source.url``, or ``<mirror>/<source.filename>`` when a mirror is given."""
    base = check_mirror(mirror)
    return source.url if base is None else f"{base}/{urllib.parse.quote(source.filename)}"


def select(sources: Mapping[str, ArchiveSource], names: Iterable[str]) -> list[ArchiveSource]:
    """The entries ``names`` of ``sources``; a missing one raises naming it."""
    chosen = []
    for name in names:
        if name not in sources:
            raise SourceError(f"the archive manifest has no entry {name!r} (it has {sorted(sources)})")
        chosen.append(sources[name])
    return chosen
