"""The engine tests' trained stage-1 checkpoint, for evaluating checkpoints here too."""

from ..engine.conftest import stage1  # noqa: F401
