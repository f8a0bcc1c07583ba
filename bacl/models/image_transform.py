"""torchvision's detection transform with separate train and test sizes.

``GeneralizedRCNNTransform`` draws the shorter side from ``min_size`` in training and
uses ``min_size[-1]`` at test; LVIS trains at 640..800 and tests at 800, but a user may
want another test size without changing the training scales.
"""

from __future__ import annotations

from torchvision.models.detection.transform import GeneralizedRCNNTransform


class TrainTestSizeTransform(GeneralizedRCNNTransform):
    """Shorter side drawn from ``train_sizes`` in training, ``test_size`` in eval mode."""

    def __init__(self, *, train_sizes: tuple[int, ...], test_size: int, max_size: int,
                 image_mean: list[float], image_std: list[float]) -> None:
        super().__init__(min_size=tuple(train_sizes), max_size=max_size, image_mean=image_mean, image_std=image_std)
        self.train_sizes = tuple(train_sizes)
        self.test_size = int(test_size)

    def train(self, mode: bool = True):
        # min_size[-1] is what the parent uses at test time.
        self.min_size = self.train_sizes if mode else (self.test_size,)
        return super().train(mode)
