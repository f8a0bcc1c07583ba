import pickle

import pytest
import torch

from bacl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "epoch": 2, "params": {"a": [1, 2]}})
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.arange(3.0))
    assert state["epoch"] == 2 and state["params"] == {"a": [1, 2]}
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "bad": Unpicklable()})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]


def test_code_in_a_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": Evil()}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt: cannot load checkpoint"):
        load_checkpoint(path)


def test_truncated_and_missing(tmp_path):
    path = tmp_path / "t.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(1000)}})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="t.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
