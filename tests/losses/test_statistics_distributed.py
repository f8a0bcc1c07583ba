"""Peer losses that accumulate statistics (EQLv2's gradient sums, Seesaw's label counts)
under two CPU processes (gloo).

Each rank sees part of every global batch (one rank sometimes none, one step has no
positives anywhere); the statistics must be identical on both ranks and equal to one
process that saw the whole batch, and so must the summed losses.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bacl.losses.eqlv2 import EQLv2Loss
from bacl.losses.seesaw import SeesawLoss

C = 6


def global_batches(width):
    """Per step: (logits, labels, split): rows [:split] on rank 0, [split:] on rank 1."""
    gen = torch.Generator().manual_seed(11)
    out = []
    for n, split, pos_frac in [(20, 10, 0.5), (12, 12, 0.6), (10, 4, 0.0), (16, 0, 1.0), (18, 9, 0.4)]:
        logits = torch.randn(n, width, generator=gen, dtype=torch.float64) * 3
        labels = torch.randint(0, C, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) >= pos_frac] = C
        out.append((logits, labels, split))
    return out


def make_losses():
    return {"eqlv2": EQLv2Loss(num_classes=C), "seesaw": SeesawLoss(num_classes=C)}


def worker(rank: int, world: int, tmpdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmpdir}/rendezvous", rank=rank, world_size=world)
    try:
        result = {}
        for name, loss_fn in make_losses().items():
            steps = []
            for logits, labels, split in global_batches(loss_fn.num_logits):
                part = slice(0, split) if rank == 0 else slice(split, None)
                n = logits[part].shape[0]
                terms = loss_fn(logits[part], labels[part])
                steps.append(sum(terms.values()).item() * n)
            result[name] = {"sums": steps, "state": {k: v.clone() for k, v in loss_fn.state_dict().items()}}
        torch.save(result, os.path.join(tmpdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name, single in make_losses().items():
        for step, (logits, labels, _) in enumerate(global_batches(single.num_logits)):
            total = sum(single(logits, labels).values()).item() * logits.shape[0]
            assert abs(r0[name]["sums"][step] + r1[name]["sums"][step] - total) <= 1e-9 * max(1.0, abs(total)), name
        for key, value in single.state_dict().items():
            torch.testing.assert_close(r0[name]["state"][key], r1[name]["state"][key], rtol=0, atol=0)
            torch.testing.assert_close(r0[name]["state"][key], value, rtol=1e-12, atol=1e-12)
        assert any(v.abs().sum() > 0 for v in single.state_dict().values()), name
