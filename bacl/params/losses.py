"""``losses:``: each classification loss's hyperparameters, one subsection per registry name.

A training stage picks a loss by name (``classifier.loss: fcbl``) and the loss is built
with its subsection here, so a method is tuned in one place whichever stage uses it.
Defaults are the published ones.
"""

from __future__ import annotations

from pydantic import Field

from .section import Bool, Float, Section

#: Losses that track per-class accuracy (an attribute ``class_accuracy``), which FHM draws
#: classes by. A test keeps this equal to what the loss registry says.
LOSSES_WITH_CLASS_ACCURACY = ("fcbl",)


class NoOptions(Section):
    """A loss without hyperparameters."""


class FCBLOptions(Section):
    """FCBL (docs/method.md section 2); alpha 0 with reweight false is exactly plain BCE."""

    alpha: Float = Field(0.85, ge=0, description="margin scale of the confusion-matrix log-ratio (published: 0.85)")
    prob_thr: Float = Field(0.7, gt=0, le=1, description="with reweight, negatives at or above this probability "
                                                        "keep weight 1 (published: 0.7)")
    reweight: Bool = Field(True, description="auto-adjusted negative weights (the reference switches them on "
                                             "for the whole classifier stage)")


class LossesParams(Section):
    bce: NoOptions = Field(default_factory=NoOptions, description="sigmoid BCE over C+1 channels, sum / N")
    softmax_ce: NoOptions = Field(default_factory=NoOptions, description="softmax cross-entropy, background last")
    fcbl: FCBLOptions = Field(default_factory=FCBLOptions, description="FCBL (BACL's loss)")

    def options(self, name: str) -> dict:
        """Keyword arguments of loss ``name``'s constructor."""
        return getattr(self, name).model_dump()
