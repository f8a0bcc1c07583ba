import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from bacl.models.backbones import NormEvalBackboneWithFPN, build_backbone, norm_eval_layers


@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory):
    """A local 'pretrained' ResNet-50 state dict with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    g = torch.Generator().manual_seed(1)
    for module in resnet.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=g) + 0.5)
    path = tmp_path_factory.mktemp("weights") / "r50.pt"
    torch.save(resnet.state_dict(), path)
    return path, resnet.state_dict()


def test_norm_eval_keeps_statistics_and_trains_affine_weights_of_stages_2_to_4(resnet50_weights):
    path, source = resnet50_weights
    backbone = build_backbone(name="resnet50_fpn", pretrained=str(path), norm="norm_eval")
    assert isinstance(backbone, NormEvalBackboneWithFPN)
    norms = norm_eval_layers(backbone)
    assert len(norms) == 53 and all(type(m) is nn.BatchNorm2d for m in norms)
    torch.testing.assert_close(backbone.body.layer3[2].bn2.running_var, source["layer3.2.bn2.running_var"])

    backbone.train()
    assert backbone.training and backbone.fpn.training
    assert not any(m.training for m in norms)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    features = backbone(torch.rand(2, 3, 64, 64))
    sum(f.mean() for f in features.values()).backward()
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())  # no statistic moved

    body = backbone.body
    assert not any(p.requires_grad for p in (*body.conv1.parameters(), *body.bn1.parameters(),
                                             *body.layer1.parameters()))
    for layer in (body.layer2, body.layer3, body.layer4):
        assert all(p.requires_grad for p in layer.parameters())
    assert body.layer2[0].bn1.weight.grad is not None and body.layer4[2].bn3.bias.grad is not None
    assert body.layer1[0].bn1.weight.grad is None


def test_norm_eval_computes_what_frozen_batchnorm_computes(resnet50_weights):
    path, _ = resnet50_weights
    torch.manual_seed(0)
    frozen = build_backbone(name="resnet50_fpn", pretrained=str(path))
    norm_eval = build_backbone(name="resnet50_fpn", pretrained=str(path), norm="norm_eval")
    assert isinstance(frozen.body.bn1, FrozenBatchNorm2d) and norm_eval_layers(frozen) == []
    norm_eval.fpn.load_state_dict(frozen.fpn.state_dict())
    frozen.train(), norm_eval.train()
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        outputs = list(zip(frozen(x).values(), norm_eval(x).values()))
    for a, b in outputs:
        # The two BatchNorm formulas round differently in float32; 50 layers accumulate it.
        assert float(torch.linalg.norm(a - b) / torch.linalg.norm(a)) < 1e-5


def test_norm_eval_with_imagenet_weights(monkeypatch, resnet50_weights):
    _, source = resnet50_weights
    requested = []

    def fake_get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return source

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    backbone = build_backbone(name="resnet50_fpn", pretrained="imagenet", norm="norm_eval")
    assert requested == [torchvision.models.ResNet50_Weights.IMAGENET1K_V1]
    torch.testing.assert_close(backbone.body.layer1[0].bn1.running_mean, source["layer1.0.bn1.running_mean"])


def test_explicit_norm_without_pretrained_weights_honours_trainable_layers():
    backbone = build_backbone(name="resnet50_fpn", norm="norm_eval")
    assert not backbone.body.layer1[0].conv1.weight.requires_grad and backbone.body.layer2[0].conv1.weight.requires_grad
    backbone = build_backbone(name="resnet50_fpn", norm="norm_eval", trainable_layers=5)
    assert all(p.requires_grad for p in backbone.body.parameters())
    backbone = build_backbone(name="resnet50_fpn", norm="train")
    assert all(p.requires_grad for p in backbone.body.parameters())
    assert type(backbone.body.bn1) is nn.BatchNorm2d and norm_eval_layers(backbone) == []
    backbone = build_backbone(name="resnet50_fpn", norm="frozen", trainable_layers=0)
    assert isinstance(backbone.body.bn1, FrozenBatchNorm2d) and not any(p.requires_grad for p in backbone.body.parameters())


def test_fpn_xavier_init():
    torch.manual_seed(0)
    stock = build_backbone(name="resnet50_fpn")
    torch.manual_seed(0)
    xavier = build_backbone(name="resnet50_fpn", fpn_init="xavier")
    lateral = xavier.fpn.inner_blocks[3][0]  # 1x1, 2048 -> 256
    xavier_bound, kaiming_bound = math.sqrt(6 / (2048 + 256)), math.sqrt(3 / 2048)
    assert lateral.weight.abs().max() <= xavier_bound
    assert lateral.weight.abs().max() > 1.2 * kaiming_bound  # more than torchvision's init can reach
    assert stock.fpn.inner_blocks[3][0].weight.abs().max() <= kaiming_bound
    assert all(not m.bias.any() for m in xavier.fpn.modules() if isinstance(m, nn.Conv2d))
    # The trunk is untouched by the FPN's initialisation.
    assert torch.equal(stock.body.layer2[0].conv1.weight, xavier.body.layer2[0].conv1.weight)
    small = build_backbone(name="small_fpn", fpn_init="xavier")
    assert not small.fpn.layer_blocks[0][0].bias.any()


def test_argument_checks():
    with pytest.raises(ValueError, match="norm"):
        build_backbone(name="resnet50_fpn", norm="group")
    with pytest.raises(ValueError, match="fpn_init"):
        build_backbone(name="resnet50_fpn", fpn_init="orthogonal")
    with pytest.raises(ValueError, match="small_fpn"):
        build_backbone(name="small_fpn", norm="norm_eval")
    with pytest.raises(ValueError, match="trainable_layers"):
        build_backbone(name="resnet50_fpn", norm="frozen", trainable_layers=6)


def test_engine_train_mode_and_freezing_keep_norm_eval_layers_in_eval():
    from bacl.engine.freeze import freeze_except, train_mode

    backbone = build_backbone(name="resnet50_fpn", norm="norm_eval")
    train_mode(backbone)  # the representation stage: no frozen norms passed
    assert not any(m.training for m in norm_eval_layers(backbone)) and backbone.fpn.training
    frozen = freeze_except(backbone, [n for n, _ in backbone.fpn.named_parameters(prefix="fpn")])
    assert {id(m) for m in frozen} == {id(m) for m in norm_eval_layers(backbone)}
