"""Process-group helpers, and the statistics FCBL and FHM sum over processes.

One spawn of two CPU processes (gloo) covers all three, since starting processes is
the slow part. Each rank sees half of every global batch; the statistics must be
identical on both ranks and equal to one process that saw the whole batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bacl.distributed import all_reduce_sum_, get_rank, get_world_size, is_dist
from bacl.losses.fcbl import FCBL
from bacl.models.feature_hallucination import FeatureHallucination

C, D = 6, 4


def global_fcbl_batches():
    """Per step: (logits, labels, split) with rows [:split] on rank 0 and [split:] on rank 1."""
    gen = torch.Generator().manual_seed(3)
    out = []
    for n, split, pos_frac in [(20, 10, 0.5), (12, 12, 0.6), (10, 4, 0.0), (16, 8, 1.0), (18, 9, 0.4)]:
        logits = torch.randn(n, C + 1, generator=gen, dtype=torch.float64) * 3
        labels = torch.randint(0, C, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) >= pos_frac] = C
        out.append((logits, labels, split))
    return out  # step 2: rank 1 has no rows; step 3: no positives anywhere


def global_fhm_batches():
    gen = torch.Generator().manual_seed(4)
    out = []
    for labels, split in [([0, 0, 1, 2, 2, 2, 5, 5], 3), ([1, 1, 3], 3), ([0, 4, 4, 4, 2, 1], 2)]:
        labels = torch.tensor(labels)
        out.append((torch.rand(labels.numel(), D, generator=gen) * 3, labels, split))
    return out  # step 1: rank 1 has nothing; class 3 appears once (variance 0)


def worker(rank: int, world: int, tmpdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmpdir}/rendezvous", rank=rank, world_size=world)
    try:
        result = {"dist": (is_dist(), get_rank(), get_world_size())}
        result["sum"] = all_reduce_sum_(torch.tensor([rank + 1.0])).item()

        fcbl = FCBL(num_classes=C, reweight=True)
        result["fcbl"] = []
        for logits, labels, split in global_fcbl_batches():
            part = slice(0, split) if rank == 0 else slice(split, None)
            n = logits[part].shape[0]
            loss = fcbl(logits[part], labels[part])["loss_cls"]
            result["fcbl"].append((loss.item() * n, fcbl.cm_num.clone(), fcbl.num_gt.clone()))

        fhm = FeatureHallucination(num_classes=C, feat_dim=D)
        for emb, labels, split in global_fhm_batches():
            part = slice(0, split) if rank == 0 else slice(split, None)
            fhm.update(emb[part], labels[part])
        result["fhm"] = {k: v.clone() for k, v in fhm.state_dict().items() if k != "_extra_state"}
        torch.save(result, os.path.join(tmpdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    assert not is_dist() and get_rank() == 0 and get_world_size() == 1
    assert all_reduce_sum_(torch.tensor([2.0])).item() == 2.0  # no group: unchanged

    mp.spawn(worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["dist"] == (True, 0, 2) and r1["dist"] == (True, 1, 2)
    assert r0["sum"] == r1["sum"] == 3.0

    single = FCBL(num_classes=C, reweight=True)
    for step, (logits, labels, _) in enumerate(global_fcbl_batches()):
        total = single(logits, labels)["loss_cls"].item() * logits.shape[0]
        (l0, cm0, n0), (l1, cm1, n1) = r0["fcbl"][step], r1["fcbl"][step]
        assert torch.equal(cm0, cm1) and torch.equal(n0, n1)
        torch.testing.assert_close(cm0, single.cm_num, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(n0, single.num_gt)
        # margins and weights came from the same pre-step statistics on both ranks
        torch.testing.assert_close(l0 + l1, total, rtol=1e-10, atol=1e-10)

    fhm = FeatureHallucination(num_classes=C, feat_dim=D)
    for emb, labels, _ in global_fhm_batches():
        fhm.update(emb, labels)
    for key in ("mean", "var", "seen"):
        assert torch.equal(r0["fhm"][key], r1["fhm"][key]), key
        torch.testing.assert_close(r0["fhm"][key], getattr(fhm, key), rtol=1e-6, atol=1e-6)
