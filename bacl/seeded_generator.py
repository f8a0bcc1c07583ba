"""A module's own random generator, carried by its ``state_dict``.

FHM and the losses that draw classes or samples (federated, BAGS) draw from a CPU
``torch.Generator`` of their own, seeded at construction, so their draws depend on
nothing else in the run, and a resumed run draws the same numbers: the generator's state
travels in the module's ``state_dict`` as its extra state. Build each process with its own
seed (seed + rank) where processes should draw differently; the training engine saves
every process's state (:func:`bacl.engine.stages.generator_states`).
"""

from __future__ import annotations

import torch


class SeededGenerator:
    """Mixin for an ``nn.Module``: ``self.generator`` and its checkpointing."""

    generator: torch.Generator

    def init_generator(self, seed: int) -> None:
        # CPU: its state is device independent, and the draws per step are small.
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))

    def get_extra_state(self) -> dict:
        return {"generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator_state"].detach().to("cpu", torch.uint8))
