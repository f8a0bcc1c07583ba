"""TrainingSampler: determinism, epochs, repeat factors, sharding, resume."""

from __future__ import annotations

import io
from collections import Counter

import pytest
import torch

from bacl.data import samplers
from bacl.data.samplers import TrainingSampler


def drain(sampler):
    return list(sampler)


def test_yields_index_and_aug_seed_pairs_covering_the_dataset():
    out = drain(TrainingSampler(dataset_size=20, seed=1))
    assert len(out) == 20
    assert sorted(i for i, _ in out) == list(range(20))
    assert all(type(i) is int and type(s) is int for i, s in out)
    assert len({s for _, s in out}) == 20 and all(0 <= s < 2**63 for _, s in out)


def test_deterministic_and_epoch_dependent():
    a, b = TrainingSampler(dataset_size=50, seed=3), TrainingSampler(dataset_size=50, seed=3)
    assert drain(a) == drain(b)
    assert drain(a) == drain(a)  # iterating again without set_epoch repeats the epoch
    first = drain(a)
    a.set_epoch(1)
    second = drain(a)
    assert [i for i, _ in second] != [i for i, _ in first]
    assert {s for _, s in second}.isdisjoint({s for _, s in first})
    b.set_epoch(1)
    assert drain(b) == second
    assert drain(TrainingSampler(dataset_size=50, seed=4)) != first


def test_no_shuffle_keeps_order():
    out = drain(TrainingSampler(dataset_size=6, seed=0, shuffle=False))
    assert [i for i, _ in out] == list(range(6))


@pytest.mark.parametrize("size, world_size", [(10, 3), (12, 4), (2, 5), (1, 1)])
def test_sharding_pads_evenly_and_interleaves_the_global_order(size, world_size):
    shards = [
        drain(TrainingSampler(dataset_size=size, seed=7, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    per_rank = -(-size // world_size)
    assert all(len(s) == per_rank for s in shards)
    assert all(len(TrainingSampler(dataset_size=size, seed=7, rank=r, world_size=world_size))
               == per_rank for r in range(world_size))
    interleaved = [shards[r][k] for k in range(per_rank) for r in range(world_size)]
    single = drain(TrainingSampler(dataset_size=size, seed=7))
    assert interleaved[:size] == single  # same samples, same seeds, whatever the world size
    assert {i for i, _ in interleaved} == set(range(size))
    pads = interleaved[size:]
    assert [i for i, _ in pads] == [i for i, _ in (single * world_size)[: len(pads)]]
    assert not {s for _, s in pads} & {s for _, s in single}


def test_rank_and_world_size_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(samplers, "get_rank", lambda: 2)
    monkeypatch.setattr(samplers, "get_world_size", lambda: 4)
    sampler = TrainingSampler(dataset_size=9, seed=0)
    assert (sampler.rank, sampler.world_size) == (2, 4)
    explicit = TrainingSampler(dataset_size=9, seed=0, rank=0, world_size=1)
    assert (explicit.rank, explicit.world_size) == (0, 1)


def test_repeat_factors_len_matches_iteration_per_epoch():
    factors = torch.tensor([1.0, 1.5, 2.7, 1.2, 3.0])
    sampler = TrainingSampler(dataset_size=5, seed=11, repeat_factors=factors)
    lengths = set()
    for epoch in range(8):
        sampler.set_epoch(epoch)
        out = drain(sampler)
        assert len(sampler) == len(out)
        counts = Counter(i for i, _ in out)
        for i, r in enumerate(factors.tolist()):
            assert int(r) <= counts[i] <= int(r) + 1
        assert len({s for _, s in out}) == len(out)  # repeats get their own seeds
        lengths.add(len(out))
    assert len(lengths) > 1  # the rounding differs between epochs


def test_repeat_factor_expectation_over_epochs():
    factors = torch.tensor([1.0, 1.25, 2.5, 4.0, 0.5])
    sampler = TrainingSampler(dataset_size=5, seed=0, repeat_factors=factors)
    totals = torch.zeros(5)
    epochs = 2000
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        indices = torch.tensor([index for index, _ in sampler])
        totals += torch.bincount(indices, minlength=5)
    # Bernoulli(frac) means: standard error <= 0.5 / sqrt(2000) ~ 0.011.
    torch.testing.assert_close(totals / epochs, factors, atol=0.05, rtol=0)


def test_state_dict_round_trip_through_weights_only_load():
    sampler = TrainingSampler(dataset_size=30, seed=5, rank=1, world_size=2)
    sampler.set_epoch(3)
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state == {"seed": 5, "epoch": 3, "dataset_size": 30}

    resumed = TrainingSampler(dataset_size=30, seed=999, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert drain(resumed) == drain(sampler)
    resumed.set_epoch(4)
    sampler.set_epoch(4)
    assert len(resumed) == 15 and drain(resumed) == drain(sampler)


def test_load_state_dict_rejects_mismatches():
    state = TrainingSampler(dataset_size=10, seed=0, world_size=2, rank=0).state_dict()
    with pytest.raises(ValueError, match="10 images.*has 11"):
        TrainingSampler(dataset_size=11, seed=0).load_state_dict(state)
    TrainingSampler(dataset_size=10, seed=0).load_state_dict({**state, "start": 0, "world_size": 2})  # older states
    with pytest.raises(KeyError, match="epoch"):
        TrainingSampler(dataset_size=10, seed=0).load_state_dict({"seed": 0})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dataset_size": 0, "seed": 0}, "dataset_size"),
        ({"dataset_size": 3, "seed": -1}, "seed"),
        ({"dataset_size": 3, "seed": 0, "rank": 2, "world_size": 2}, "rank"),
        ({"dataset_size": 3, "seed": 0, "repeat_factors": torch.ones(4)}, "4 entries"),
        ({"dataset_size": 2, "seed": 0, "repeat_factors": torch.tensor([1.0, float("nan")])},
         "finite"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingSampler(**kwargs)
