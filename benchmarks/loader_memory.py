"""Memory of the LVIS index in DataLoader workers over an epoch, at LVIS v1 size.

Builds ``LVISDetection`` on an LVIS-sized annotation file (from
``benchmarks/lvis_sized_annotations.py``; timed, with the main process's peak RSS),
then runs one epoch of index lookups through a ``DataLoader`` with forked workers:
every sample is what training gets (boxes, labels, image id, size; masks with
``--with-masks``) except the pixels: the dataset subclass ``IndexOnlyLVIS`` skips the
image file and returns a 1x1 black image. At the first and at the last batch it reads
``/proc/<pid>/smaps_rollup`` of the main process and of each worker: RSS, PSS and USS
(private pages). A worker's USS growing over the epoch is the copy-on-read cost of the
index (pages of the parent copied because a Python object on them was touched).

As a baseline in the same run, the same samples are served from one Python dict per
image (lists of boxes and labels), the layout of a dataset that keeps ``json.load``'s
records; ``--variants json`` times ``json.load`` of the file alone (where the previous
reader started), allowed ``--json-limit-gb`` more address space. Each variant runs in
its own process. ``--gc-freeze`` calls ``gc.freeze()`` before the workers start, so
that Python's collector in the workers does not walk (and copy) the parent's objects::

    python benchmarks/lvis_sized_annotations.py --out data/lvis_sized
    python benchmarks/loader_memory.py --annotations data/lvis_sized/lvis_v1_train.json
    python benchmarks/loader_memory.py --annotations ... --with-masks --limit 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from bacl.data.collate import collate_detection
from bacl.data.lvis_dataset import LVISDetection

MiB = 2 ** 20


class IndexOnlyLVIS(LVISDetection):
    """``LVISDetection`` whose samples have a 1x1 black image instead of the file's
    pixels; boxes, labels, ids, sizes (and masks) are those training gets."""

    def _load_image(self, index: int) -> torch.Tensor:
        return torch.zeros(3, 1, 1)


class PythonObjectIndex(torch.utils.data.Dataset):
    """The baseline: the same targets served from one Python dict per image."""

    def __init__(self, dataset: IndexOnlyLVIS) -> None:
        start = dataset._ann_start
        boxes, labels = dataset._boxes.tolist(), dataset._labels.tolist()
        self.records = [
            {"image_id": int(dataset.image_ids[i]), "height": int(dataset._heights[i]),
             "width": int(dataset._widths[i]), "boxes": boxes[start[i]:start[i + 1]],
             "labels": labels[start[i]:start[i + 1]],
             "category_set": dataset.image_category_sets[i].tolist()}
            for i in range(len(dataset))
        ]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rec = self.records[index]
        target = {"boxes": torch.tensor(rec["boxes"], dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(rec["labels"], dtype=torch.int64),
                  "image_id": rec["image_id"],
                  "orig_size": torch.tensor([rec["height"], rec["width"]])}
        return torch.zeros(3, 1, 1), target


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS, USS and peak RSS (MiB) of process ``pid``, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1]) * 1024
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return {"rss": fields["Rss"] / MiB, "pss": fields["Pss"] / MiB,
            "uss": (fields["Private_Clean"] + fields["Private_Dirty"]) / MiB, "peak": peak / MiB}


def run_json_load(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``json.load`` of the file, allowed ``--json-limit-gb`` more address space."""
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = mapped + int(args.json_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    before = memory(os.getpid())
    tic = time.perf_counter()
    try:
        with open(args.annotations, "rb") as f:
            json.load(f)
    except MemoryError:
        return {"variant": "json", "failed": f"MemoryError with {args.json_limit_gb:g} GiB more address space",
                "before": before, "after_build": memory(os.getpid())}
    return {"variant": "json", "build_s": time.perf_counter() - tic, "before": before,
            "after_build": memory(os.getpid())}


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """Build the index, run one epoch, and return the figures (in this process)."""
    before = memory(os.getpid())
    tic = time.perf_counter()
    dataset = IndexOnlyLVIS(annotation_file=args.annotations, image_root="unused",
                            check_images=False, filter_empty=True, with_masks=args.with_masks)
    build_s = time.perf_counter() - tic
    after_build = memory(os.getpid())
    if args.variant == "python":
        tic = time.perf_counter()
        dataset = PythonObjectIndex(dataset)
        build_s += time.perf_counter() - tic
    if args.gc_freeze:
        gc.freeze()  # the parent's objects leave the collector's generations
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    indices = indices[:args.limit].tolist() if args.limit else indices.tolist()
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=indices,
                        num_workers=args.workers, collate_fn=collate_detection)
    tic = time.perf_counter()
    batches = iter(loader)
    num_batches = len(loader)
    boxes = len(next(batches)[1])
    pids = [w.pid for w in batches._workers]  # the workers of this epoch
    start = {"main": memory(os.getpid()), **{f"worker {k}": memory(p) for k, p in enumerate(pids)}}
    for _ in range(num_batches - 2):
        boxes += sum(len(t["boxes"]) for t in next(batches)[1])
    end = {"main": memory(os.getpid()), **{f"worker {k}": memory(p) for k, p in enumerate(pids)}}
    for _, targets in batches:  # the last batch; the workers then exit
        boxes += sum(len(t["boxes"]) for t in targets)
    epoch_s = time.perf_counter() - tic
    return {"variant": args.variant, "images": len(dataset), "samples": len(indices),
            "build_s": build_s, "before": before, "after_build": after_build, "epoch_s": epoch_s,
            "start": start, "end": end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--with-masks", action="store_true", help="rasterise masks too")
    parser.add_argument("--limit", type=int, default=0, help="samples per epoch (0: all)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="call gc.freeze() before the workers start")
    parser.add_argument("--variants", nargs="+", default=["flat", "python"],
                        choices=["flat", "python", "json"],
                        help="flat: the dataset; python: one dict per image; json: only "
                             "json.load of the file (the previous reader's first step)")
    parser.add_argument("--json-limit-gb", type=float, default=5.0,
                        help="address space the json variant may add (GiB)")
    parser.add_argument("--variant", choices=["flat", "python", "json"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child process: one variant, figures as JSON on stdout
        print(json.dumps(run_json_load(args) if args.variant == "json" else run_variant(args)))
        return

    load = " | load avg %.1f %.1f %.1f" % os.getloadavg()
    print(f"machine: {platform.platform()} | cpus {os.cpu_count()} | python "
          f"{platform.python_version()} | torch {torch.__version__}{load}")
    print(f"file: {args.annotations} ({args.annotations.stat().st_size / MiB:.0f} MiB), "
          f"{args.workers} workers, batch {args.batch_size}, masks {args.with_masks}, "
          f"gc.freeze {args.gc_freeze}")
    results = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--annotations", str(args.annotations), "--workers",
               str(args.workers), "--batch-size", str(args.batch_size), "--limit",
               str(args.limit), "--variant", variant] + (["--with-masks"] * args.with_masks)
        cmd += ["--gc-freeze"] * args.gc_freeze + ["--json-limit-gb", str(args.json_limit_gb)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = r = json.loads(out.strip().splitlines()[-1])
        if variant == "json":
            done = r.get("failed") or f"{r['build_s']:.1f} s"
            print(f"\n[json.load alone] {done}; peak RSS {r['after_build']['peak']:.0f} MiB "
                  f"({r['after_build']['peak'] - r['before']['rss']:+.0f} MiB over the "
                  f"{r['before']['rss']:.0f} MiB before reading)")
            continue
        print(f"\n[{variant} index] {r['images']} images; index built in {r['build_s']:.1f} s; "
              f"main process after build: RSS {r['after_build']['rss']:.0f} MiB, peak RSS "
              f"{r['after_build']['peak']:.0f} MiB ({r['after_build']['peak'] - r['before']['rss']:+.0f} "
              f"MiB over the {r['before']['rss']:.0f} MiB before); epoch of {r['samples']} "
              f"samples in {r['epoch_s']:.1f} s")
        print(f"  {'process':10s} {'RSS start':>10s} {'RSS end':>9s} {'PSS start':>10s} "
              f"{'PSS end':>9s} {'USS start':>10s} {'USS end':>9s} {'USS growth':>11s}")
        for name in r["start"]:
            a, b = r["start"][name], r["end"][name]
            print(f"  {name:10s} {a['rss']:10.1f} {b['rss']:9.1f} {a['pss']:10.1f} "
                  f"{b['pss']:9.1f} {a['uss']:10.1f} {b['uss']:9.1f} {b['uss'] - a['uss']:+11.1f}")
    if "json" in results and "flat" in results and "build_s" in results["json"]:
        a, b = results["json"], results["flat"]
        def extra(r):
            return r["after_build"]["peak"] - r["before"]["rss"]
        print(f"index build: json.load alone / flat index: time "
              f"{a['build_s'] / b['build_s']:.1f}x, memory added at peak "
              f"{extra(a) / extra(b):.1f}x")
    if {"flat", "python"} <= set(results):
        def growth(r):
            return sum(r["end"][n]["uss"] - r["start"][n]["uss"] for n in r["start"]
                       if n != "main")
        print(f"\nworkers' USS growth over the epoch, all workers: flat "
              f"{growth(results['flat']):+.1f} MiB, Python objects "
              f"{growth(results['python']):+.1f} MiB")


if __name__ == "__main__":
    main()
