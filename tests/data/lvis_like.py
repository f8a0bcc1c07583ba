"""A tiny LVIS-shaped dataset packed like the official archives, and a loopback server for it.

:func:`build_lvis_like` writes, in well under a second, the six archives the download
step knows by name (``lvis_v1_train.json.zip``, ``lvis_v1_val.json.zip``,
``lvis_v0.5_train.json.zip``, ``lvis_v0.5_val.json.zip``, ``train2017.zip``,
``val2017.zip``) holding real LVIS json layouts and a few dozen small JPEGs of coloured
shapes, one colour per class, so a tiny detector can learn them. It returns the file
tree ``prepare_lvis`` should lay out and manifest entries whose URLs are relative to a
base, for :class:`ArchiveServer` or any other server.

:class:`ArchiveServer` serves a folder on 127.0.0.1 with HTTP Range support, counts the
requests it receives, and misbehaves on demand (cut a body short, stall, ignore Range).

Nothing here is a test; tests and the pipeline's end-to-end check import it.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bacl.data.lvis_sources import ArchiveSource

# Six classes, long-tailed on purpose; one colour each, two shapes (rectangle, 12-gon).
CATEGORIES = [
    {"id": 1, "name": "red_box", "synset": "red_box.n.01", "frequency": "f", "colour": (220, 40, 40)},
    {"id": 2, "name": "green_disc", "synset": "green_disc.n.01", "frequency": "f", "colour": (40, 200, 60)},
    {"id": 3, "name": "blue_box", "synset": "blue_box.n.01", "frequency": "c", "colour": (40, 70, 230)},
    {"id": 4, "name": "yellow_disc", "synset": "yellow_disc.n.01", "frequency": "c", "colour": (235, 220, 40)},
    {"id": 5, "name": "magenta_box", "synset": "magenta_box.n.01", "frequency": "r", "colour": (220, 50, 220)},
    {"id": 6, "name": "cyan_disc", "synset": "cyan_disc.n.01", "frequency": "r", "colour": (50, 220, 230)},
]
CLASS_WEIGHTS = np.array([10, 8, 4, 3, 1, 1], dtype=np.float64)
COCO_URL = "http://images.cocodataset.org"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed member times: the same inputs give the same bytes


@dataclass(frozen=True)
class LVISLike:
    """What :func:`build_lvis_like` wrote.

    Attributes:
        served_dir: the folder to serve; it holds exactly the archives.
        archives: ``{file name: path}`` of each archive.
        entries: ``{file name: {"relative_url", "size", "sha256", "md5", "kind", "contents"}}``.
        tree: what ``prepare_lvis`` lays out, as sorted paths relative to the LVIS folder
            (``"lvis"``) and the COCO folder (``"coco"``); the COCO list holds every image.
        annotations: ``{"v1": {"train": dict, "val": dict}, "v0.5": {...}}``, the json contents.
        image_splits: ``{image id: "train2017" | "val2017"}``.
    """

    served_dir: Path
    archives: dict[str, Path]
    entries: dict[str, dict]
    tree: dict[str, list[str]]
    annotations: dict[str, dict[str, dict]]
    image_splits: dict[int, str]

    def sources(self, base_url: str = "https://lvis-like.invalid/files") -> dict[str, ArchiveSource]:
        """Manifest entries with absolute URLs under ``base_url``, sizes and checksums pinned."""
        base = base_url.rstrip("/")
        return {
            name: ArchiveSource(
                filename=name, url=f"{base}/{e['relative_url']}", kind=e["kind"],
                contents=tuple(e["contents"]), size=e["size"], sha256=e["sha256"], md5=e["md5"],
                unpacked_ratio=4.0 if e["kind"] == "annotations" else 1.1,
            )
            for name, e in self.entries.items()
        }


def build_lvis_like(
    root: Path, *, num_train: int = 24, num_val2017: int = 6, num_val_from_train2017: int = 4,
    width: int = 96, height: int = 72, seed: int = 0,
) -> LVISLike:
    """Write the archives under ``root/served`` and return what they hold.

    COCO side: ``train2017`` holds ``num_train + num_val_from_train2017`` images,
    ``val2017`` holds ``num_val2017``. LVIS v1: train = the first ``num_train`` of
    train2017; val = all of val2017 plus the other train2017 images (as LVIS v1 val draws
    from both COCO splits); records carry ``coco_url`` and no ``file_name``. LVIS v0.5:
    train = the same train2017 images, val = val2017; records also carry a COCO-2014 style
    ``file_name``. Both versions' category records carry the train split's counts.
    """
    rng = np.random.default_rng(seed)
    served = Path(root) / "served"
    served.mkdir(parents=True, exist_ok=True)
    train_ids = [100_001 + 7 * k for k in range(num_train + num_val_from_train2017)]
    val_ids = [500_003 + 11 * k for k in range(num_val2017)]
    image_splits = {i: "train2017" for i in train_ids} | {i: "val2017" for i in val_ids}

    images: dict[int, dict] = {}
    anns_by_image: dict[int, list[dict]] = {}
    jpegs: dict[str, list[tuple[str, bytes]]] = {"train2017": [], "val2017": []}
    next_ann_id = 1
    for n, image_id in enumerate(train_ids + val_ids):
        folder = image_splits[image_id]
        # The first six images show every class once, so even rare classes are in train.
        forced = [n % 6 + 1] if n < 6 else []
        extra = int(rng.integers(0 if forced else 1, 3))
        classes = forced + [int(c) + 1 for c in rng.choice(6, size=extra, p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum())]
        pixels, shapes = _draw(rng, classes, width, height)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        name = f"{image_id:012d}.jpg"
        jpegs[folder].append((f"{folder}/{name}", buffer.getvalue()))
        present = {c for c, _ in shapes}
        absent = sorted(set(range(1, 7)) - present)
        images[image_id] = {
            "id": image_id, "width": width, "height": height, "license": 1,
            "coco_url": f"{COCO_URL}/{folder}/{name}",
            "flickr_url": f"http://farm1.staticflickr.com/0/{image_id}_lvislike.jpg",
            "date_captured": "2013-11-14 16:28:13",
            "neg_category_ids": absent[: int(rng.integers(0, len(absent) + 1))],
            "not_exhaustive_category_ids": sorted(present)[:1] if n % 5 == 4 else [],
        }
        anns_by_image[image_id] = []
        for category_id, polygon in shapes:
            xs, ys = polygon[0::2], polygon[1::2]
            x0, y0 = min(xs), min(ys)
            anns_by_image[image_id].append({
                "id": next_ann_id, "image_id": image_id, "category_id": category_id,
                "segmentation": [polygon], "area": _polygon_area(polygon),
                "bbox": [x0, y0, round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
            })
            next_ann_id += 1

    v1_train = train_ids[:num_train]
    v1_val = val_ids + train_ids[num_train:]
    splits = {"v1": {"train": v1_train, "val": v1_val}, "v0.5": {"train": v1_train, "val": val_ids}}
    annotations = {
        version: {
            split: _lvis_json(version, ids, images, anns_by_image, train_ids=split_ids["train"])
            for split, ids in split_ids.items()
        }
        for version, split_ids in splits.items()
    }

    archives: dict[str, Path] = {}
    entries: dict[str, dict] = {}
    for version, by_split in annotations.items():
        for split, data in by_split.items():
            member = f"lvis_{version}_{split}.json"
            archives[member + ".zip"] = _write_zip(served / f"{member}.zip", [(member, json.dumps(data).encode())],
                                                   compress=True)
            entries[member + ".zip"] = {"kind": "annotations", "contents": [member]}
    for folder, files in jpegs.items():
        archives[f"{folder}.zip"] = _write_zip(served / f"{folder}.zip", [(f"{folder}/", b"")] + sorted(files),
                                               compress=False)
        entries[f"{folder}.zip"] = {"kind": "images", "contents": [folder]}
    for name, path in archives.items():
        data = path.read_bytes()
        entries[name].update(relative_url=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                             md5=hashlib.md5(data).hexdigest())

    tree = {
        "lvis": sorted(f"lvis_{v}_{s}.json" for v in annotations for s in annotations[v]),
        "coco": sorted(name for files in jpegs.values() for name, _ in files),
    }
    return LVISLike(served_dir=served, archives=archives, entries=entries, tree=tree,
                    annotations=annotations, image_splits=image_splits)


def _draw(rng: np.random.Generator, classes: list[int], width: int, height: int):
    """Noise background with one filled shape per class id; returns pixels and polygons."""
    pixels = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    shapes = []
    for category_id in classes:
        w, h = (int(v) for v in rng.integers(16, 34, size=2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if category_id % 2:  # boxes
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        else:  # discs, as 12-gons
            cx, cy = x + w / 2, y + h / 2
            angles = np.arange(12) * (2 * np.pi / 12)
            polygon = [round(float(v), 2) for a in angles
                       for v in (cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a))]
        draw.polygon(polygon, fill=CATEGORIES[category_id - 1]["colour"])
        shapes.append((category_id, [float(v) for v in polygon]))
    return np.asarray(image), shapes


def _polygon_area(polygon: list[float]) -> float:
    xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
    return round(float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2), 2)


def _lvis_json(version: str, image_ids: list[int], images: dict[int, dict],
               anns_by_image: dict[int, list[dict]], *, train_ids: list[int]) -> dict:
    """One split's file in the layout of that LVIS version."""
    records = []
    for image_id in image_ids:
        record = dict(images[image_id])
        if version == "v0.5":
            # v0.5 names files after COCO 2014; val2017 came out of val2014.
            split2014 = "val2014" if record["coco_url"].split("/")[-2] == "val2017" or image_id % 2 else "train2014"
            record["file_name"] = f"COCO_{split2014}_{image_id:012d}.jpg"
        records.append(record)
    train_anns = [a for i in train_ids for a in anns_by_image[i]]
    categories = []
    for cat in CATEGORIES:
        record = {k: v for k, v in cat.items() if k != "colour"}
        record["synonyms"] = [cat["name"]]
        record["def"] = f"a {cat['name'].replace('_', ' ')} drawn on noise"
        record["image_count"] = len({a["image_id"] for a in train_anns if a["category_id"] == cat["id"]})
        record["instance_count"] = sum(a["category_id"] == cat["id"] for a in train_anns)
        categories.append(record)
    return {
        "info": {"description": f"LVIS-like {version} test set", "version": version.lstrip("v"), "year": 2020},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "images": records,
        "annotations": [a for i in image_ids for a in anns_by_image[i]],
        "categories": categories,
    }


def _write_zip(path: Path, members: list[tuple[str, bytes]], *, compress: bool) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o40755 if name.endswith("/") else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if compress and not name.endswith("/") else zipfile.ZIP_STORED
            zf.writestr(info, data)
    return path


# --------------------------------------------------------------------------- loopback server


@dataclass
class ArchiveServer:
    """Serve the files of ``folder`` at ``http://127.0.0.1:<port>/`` from a thread.

    Attributes (set them before the requests they should affect):
        ranges: honour ``Range: bytes=N-`` requests (else answer 200 with the whole file).
        cut_once: ``{url path: n}``: the next GET of that path announces the whole length,
            sends ``n`` body bytes and closes the connection (once).
        cut_every: ``{url path: n}``: the same for every GET of that path.
        stall: url paths whose GETs wait ``stall_s`` seconds before answering anything
            (except one that ``stall_once_after`` serves).
        stall_once_after: ``{url path: n}``: the next GET sends ``n`` body bytes, then
            waits ``stall_s`` seconds before sending the rest (once).
        replace: ``{url path: bytes}`` served instead of the file's bytes.
        requests: ``(method, path, Range header or None)`` of every request, in order.
    """

    folder: Path
    ranges: bool = True
    cut_once: dict[str, int] = field(default_factory=dict)
    cut_every: dict[str, int] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)
    stall_once_after: dict[str, int] = field(default_factory=dict)
    stall_s: float = 2.0
    replace: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        handler = type("Handler", (_Handler,), {"archive_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def gets(self, path: str | None = None) -> list[tuple[str, str, str | None]]:
        """The GET requests (for ``path`` only, when given)."""
        with self._lock:
            return [r for r in self.requests if r[0] == "GET" and (path is None or r[1] == path)]

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ArchiveServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    archive_server: ArchiveServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        server = self.archive_server
        path = self.path.split("?", 1)[0]
        range_header = self.headers.get("Range")
        with server._lock:
            server.requests.append(("HEAD" if head else "GET", path, range_header))
            cut = None if head else server.cut_once.pop(path, server.cut_every.get(path))
            stall_after = None if head else server.stall_once_after.pop(path, None)
        if not head and path in server.stall and stall_after is None:
            server._closing.wait(server.stall_s)
            self.close_connection = True
            return
        data = server.replace.get(path)
        if data is None:
            file = (server.folder / path.lstrip("/")).resolve()
            if server.folder.resolve() not in file.parents or not file.is_file():
                self._answer(404, b"not found", head=head)
                return
            data = file.read_bytes()
        start = 0
        if range_header and server.ranges:
            start = int(range_header.removeprefix("bytes=").split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
        self.end_headers()
        if head:
            return
        body = data[start:]
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        if stall_after is not None:
            self.wfile.write(body[:stall_after])
            self.wfile.flush()
            server._closing.wait(server.stall_s)
            body = body[stall_after:]
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, code: int, body: bytes, *, head: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing.zip"

