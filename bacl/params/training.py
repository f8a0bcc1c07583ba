"""The training sections: ``solver:`` (shared) and one section per stage.

A stage's section holds what that stage alone reads: its loss (by name; the loss's
hyperparameters are in ``losses:``), schedule length, weight decay (the reference's two
stages differ in it), augmentation and sampling; the classifier stage adds where it
starts from and FHM. What each stage *is* (which parameters train, what it starts from)
is code: :mod:`bacl.engine.stages`.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator, model_validator

from .section import Bool, Float, Int, Section, Str


class SolverParams(Section):
    """SGD, warm-up and data loading, shared by every training stage."""

    batch_size: Int = Field(8, ge=1, description="images per process and step")
    base_lr: Float = Field(0.04, gt=0, description="lr for base_batch_size images, scaled linearly with the total "
                                                   "batch (synthetic, from scratch: 0.04; LVIS: 0.02)")
    base_batch_size: Int = Field(16, ge=1, description="the batch size base_lr is given for")
    momentum: Float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    warmup_iters: Int = Field(100, ge=0, description="linear warm-up from warmup_factor * lr over these iterations")
    warmup_factor: Float = Field(0.001, gt=0, le=1, description="warm-up starts at this fraction of the lr")
    lr_gamma: Float = Field(0.1, gt=0, le=1, description="step decay factor at each of a stage's lr_steps")
    clip_grad_norm: Optional[Float] = Field(None, gt=0, description="null = off")
    amp: Bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    workers: Int = Field(2, ge=0, description="data-loading processes")
    launcher: Str = Field("python", min_length=1, description="what dvc.yaml starts training and evaluation with: "
                                                              "python (one process), or e.g. torchrun "
                                                              "--nproc_per_node 8 (DDP on 8 GPUs)")


class LSJParams(Section):
    """Large-scale jitter with copy-paste (docs/augmentation.md): the reference's stage 1 on LVIS."""

    enabled: Bool = Field(False, description="resize by output_size x U(scale_range), crop and pad to a square "
                                              "(instead of min_sizes/max_size); LVIS stage 1: true")
    output_size: Int = Field(1280, ge=1, description="side of the square the model then trains at")
    scale_range: list[Float] = Field([0.8, 1.25], min_length=2, max_length=2, description="longer side = "
                                                                                          "output_size x U(range)")
    copy_paste: Bool = Field(True, description="paste objects of a second image over the first (needs masks)")
    max_num_pasted: Int = Field(100, ge=1, description="objects pasted: fewer than this (the reference's bound)")
    bbox_occluded_thr: Float = Field(10.0, ge=0, description="px at output_size: a covered object is kept if "
                                                             "its box moved at most this much on every side...")
    mask_occluded_thr: Int = Field(300, ge=0, description="...or more than this many of its pixels stay visible")

    @field_validator("scale_range")
    @classmethod
    def _range(cls, value: list[float]) -> list[float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"must be [low, high] with 0 < low <= high, got {value}")
        return value


class StageParams(Section):
    """What every training stage reads from its own section."""

    output_dir: Str = Field(description="checkpoints, resolved params and training curves of the stage")
    loss: Str = Field(description="classification loss, a key of losses:")
    epochs: Int = Field(ge=1, description="passes over the (repeat-factor resampled) train split")
    lr_steps: list[Int] = Field(description="epochs after which the lr is multiplied by solver.lr_gamma")
    weight_decay: Float = Field(1e-4, ge=0, description="SGD weight decay")
    min_sizes: list[Int] = Field([160], min_length=1, description="shorter side in training, one drawn per image "
                                                                 "(LVIS: 640..800 step 32)")
    max_size: Int = Field(1333, ge=1, description="longer side cap in training")
    flip_prob: Float = Field(0.5, ge=0, le=1, description="horizontal flip probability")
    repeat_factor_threshold: Optional[Float] = Field(None, gt=0, le=1, description="null = off; LVIS's "
                                                                                  "repeat-factor sampling: 0.001")
    filter_empty: Bool = Field(True, description="drop training images without annotations")
    rpn_proposals: Optional[Int] = Field(None, ge=1, description="proposals per image after the RPN's NMS in "
                                                                "training; null = the preset's (r50_fpn: 2000, "
                                                                "BACL's configs; the softmax baselines': 1000)")
    lsj: LSJParams = Field(default_factory=LSJParams, description="large-scale jitter + copy-paste (off: the "
                                                                  "multi-scale min_sizes above)")

    @field_validator("lr_steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(s <= 0 for s in steps) or steps != sorted(steps):
            raise ValueError(f"must be increasing positive epoch numbers, got {steps}")
        return steps

    @field_validator("min_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(s <= 0 for s in sizes):
            raise ValueError(f"must be positive sizes, got {sizes}")
        return sizes

    @model_validator(mode="after")
    def _max_size(self):
        if self.max_size < max(self.min_sizes):
            raise ValueError(f"max_size: must be >= every min size ({max(self.min_sizes)}), got {self.max_size}")
        return self


class RepresentationParams(StageParams):
    """Stage 1: the whole detector from ImageNet weights (or from scratch), plain BCE."""

    output_dir: Str = Field("runs/representation", description="stage 1's run folder")
    loss: Str = Field("bce", description="classification loss, a key of losses: (the reference: bce)")
    epochs: Int = Field(7, ge=1, description="passes over the train split (LVIS: 12)")
    lr_steps: list[Int] = Field([5, 6], description="epochs after which the lr drops (LVIS: [8, 11])")


class FHMParams(Section):
    """The feature hallucination module of the classifier stage (docs/method.md section 3)."""

    enabled: Bool = Field(True, description="draw hallucinated embeddings for poorly classified classes; needs a "
                                            "loss that tracks per-class accuracy (fcbl)")
    decay: Float = Field(0.1, gt=0, le=1, description="weight of a batch's class mean/variance in the running "
                                                      "statistics")
    num_sampled_classes: Int = Field(8, ge=0, description="classes drawn per process and step, prob. proportional "
                                                          "to 1 - accuracy; 8 x 12 = 96 embeddings, as the reference "
                                                          "per GPU of 2 images (the LVIS presets' batch); the "
                                                          "synthetic default keeps 96 per 8 images")
    num_samples_per_class: Int = Field(12, ge=0, description="hallucinated embeddings per drawn class")
    num_jitter: Int = Field(16, ge=16, description="jittered boxes per ground-truth box (a multiple of 16)")

    @field_validator("num_jitter")
    @classmethod
    def _multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(f"must be a positive multiple of 16 (each 16 boxes cover all jitter sign "
                             f"patterns), got {value}")
        return value


class ClassifierParams(StageParams):
    """Stage 2 of BACL: only the classification layer, the box regressor and the RPN train."""

    output_dir: Str = Field("runs/bacl", description="the classifier stage's run folder")
    init_from: Optional[Str] = Field(None, description="weights to start from; null = the representation "
                                                       "stage's model_final.pt")
    loss: Str = Field("fcbl", description="classification loss, a key of losses: (BACL: fcbl)")
    epochs: Int = Field(2, ge=1, description="passes over the train split (LVIS: 12)")
    lr_steps: list[Int] = Field([1], description="epochs after which the lr drops (LVIS: [8, 11])")
    fhm: FHMParams = Field(default_factory=FHMParams, description="feature hallucination (docs/method.md section 3)")


class BaselineParams(StageParams):
    """What BACL is compared with: every parameter trains, from the same start or from the model's
    initialisation (the seed table's baselines)."""

    output_dir: Str = Field("runs/baseline", description="the baseline's run folder")
    init_from: Optional[Str] = Field(None, description="null = the representation stage's model_final.pt "
                                                       "(stage 1 continued); model = a freshly built model "
                                                       "(model.pretrained_backbone); or a checkpoint path")
    loss: Str = Field("bce", description="classification loss, a key of losses:")
    epochs: Int = Field(2, ge=1, description="as classifier.epochs, so both runs train as long")
    lr_steps: list[Int] = Field([1], description="epochs after which the lr drops")
