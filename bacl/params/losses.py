"""``losses:``: each classification loss's hyperparameters, one subsection per registry name.

A training stage picks a loss by name (``classifier.loss: fcbl``) and the loss is built
with its subsection here, so a method is tuned in one place whichever stage uses it.
Defaults are the published ones.
"""

from __future__ import annotations

from pydantic import Field

from .section import Bool, Float, Int, Section

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


class EQLOptions(Section):
    """Equalization loss (Tan et al. 2020): tail classes' negative gradients from foreground RoIs are dropped."""

    lambda_: Float = Field(0.00177, gt=0, le=1, description="a class is a tail class below this share of training "
                                                            "images (official LVIS v0.5 config; v1: 0.0011)")


class EQLv2Options(Section):
    """Equalization loss v2 (Tan et al. 2021): gradient-ratio driven positive/negative weights."""

    gamma: Float = Field(12.0, gt=0, description="slope of the gradient ratio -> negative weight mapping")
    mu: Float = Field(0.8, description="centre of that mapping")
    alpha: Float = Field(4.0, ge=0, description="extra weight of positives of rarely positive classes")


class SeesawOptions(Section):
    """Seesaw loss (Wang et al. 2021): mitigation and compensation factors on a softmax."""

    p: Float = Field(0.8, ge=0, description="mitigation exponent on the count ratio")
    q: Float = Field(2.0, ge=0, description="compensation exponent on the score ratio")
    eps: Float = Field(0.01, gt=0, description="floor of the ground truth's score in the compensation ratio")
    normed_classifier: Bool = Field(True, description="cosine classifier (the published configs)")
    temperature: Float = Field(20.0, gt=0, description="scale of the cosine classifier's logits")


class FederatedOptions(Section):
    """Federated loss (detectron2): BCE over the batch's classes plus negatives drawn by frequency."""

    freq_weight_power: Float = Field(0.5, ge=0, description="negatives drawn with probability ~ image_count^power")
    num_classes_kept: Int = Field(50, ge=1, description="classes per batch, filled up with drawn negatives")


class LogitAdjustedOptions(Section):
    """Logit-adjusted softmax CE; tau 1 is balanced softmax (Ren et al. 2020)."""

    tau: Float = Field(1.0, ge=0, description="scale of the log-prior added in training (1 = balanced softmax)")
    background_prior: Float = Field(0.75, gt=0, lt=1, description="prior of the background label (the RoI "
                                                                 "sampler's background share)")


class ECMOptions(Section):
    """Effective class-margin loss (Hyun Cho and Kraehenbuehl 2022): sigmoid margins from class frequencies."""

    fg_bg_ratio: Float = Field(6.3313, gt=0, description="background over summed foreground counts (official)")
    normed_classifier: Bool = Field(True, description="cosine classifier (the published configs)")
    temperature: Float = Field(20.0, gt=0, description="scale of the cosine classifier's logits")


class BAGSOptions(Section):
    """Balanced group softmax (Li et al. 2020): a softmax per group of classes of similar frequency."""

    group_bounds: list[Int] = Field([10, 100, 1000], min_length=1, description="training-instance counts "
                                                                                 "separating the groups")
    others_sample_ratio: Float = Field(8.0, gt=0, description="'others' RoIs drawn per RoI of a group")


class LossesParams(Section):
    bce: NoOptions = Field(default_factory=NoOptions, description="sigmoid BCE over C+1 channels, sum / N")
    softmax_ce: NoOptions = Field(default_factory=NoOptions, description="softmax cross-entropy, background last")
    fcbl: FCBLOptions = Field(default_factory=FCBLOptions, description="FCBL (BACL's loss)")
    eql: EQLOptions = Field(default_factory=EQLOptions, description="EQL")
    eqlv2: EQLv2Options = Field(default_factory=EQLv2Options, description="EQLv2")
    seesaw: SeesawOptions = Field(default_factory=SeesawOptions, description="Seesaw loss")
    federated: FederatedOptions = Field(default_factory=FederatedOptions, description="federated loss")
    logit_adjusted: LogitAdjustedOptions = Field(default_factory=LogitAdjustedOptions,
                                                 description="logit-adjusted CE / balanced softmax")
    ecm: ECMOptions = Field(default_factory=ECMOptions, description="ECM loss")
    bags: BAGSOptions = Field(default_factory=BAGSOptions, description="balanced group softmax (BAGS)")

    def options(self, name: str) -> dict:
        """Keyword arguments of loss ``name``'s constructor."""
        return getattr(self, name).model_dump()
