"""Settings -> parts: what each stage's settings change in the built detector and loss."""

import torch

from bacl.engine.build import build_classification_loss, build_model
from bacl.params import load_params


def built(params, stage: str, num_classes: int = 3):
    settings = params.stage(stage)
    loss = build_classification_loss(settings.loss, losses=params.losses, num_classes=num_classes)
    return build_model(params.model, num_classes=num_classes, loss=loss, stage=settings, test=params.evaluate)


def test_training_proposals_are_a_stage_setting():
    params = load_params(None, ["baseline.rpn_proposals=100"])
    assert built(params, "representation").rpn._post_nms_top_n["training"] == 500  # synthetic_small's
    assert built(params, "baseline").rpn._post_nms_top_n["training"] == 100


def test_with_large_scale_jitter_the_model_trains_at_the_jittered_size():
    params = load_params(None, ["representation.lsj.enabled=true", "representation.lsj.output_size=128",
                                "evaluate.min_size=96"])
    model = built(params, "representation")
    model.train()
    images, _ = model.transform([torch.rand(3, 128, 128)])
    assert images.image_sizes == [(128, 128)]  # scale 1: the dataset already sized it
    model.eval()
    assert model.transform.min_size == (96,)


def test_losses_get_their_options_statistics_and_seed():
    params = load_params(None, ["losses.federated.num_classes_kept=2", "losses.fcbl.alpha=0.3"])
    statistics = {"image_counts": torch.tensor([5, 1, 9]), "instance_counts": torch.tensor([7, 1, 20]),
                  "num_images": 12}
    federated = build_classification_loss("federated", losses=params.losses, num_classes=3, statistics=statistics,
                                          seed=4)
    assert federated.num_classes_kept == 2
    assert torch.equal(federated.generator.get_state(), torch.Generator().manual_seed(4).get_state())
    fcbl = build_classification_loss("fcbl", losses=params.losses, num_classes=3)
    assert (fcbl.alpha, fcbl.reweight) == (0.3, True)
