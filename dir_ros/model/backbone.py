"""ResNet-18/34/50 feature extractor with torchvision's parameter layout (no torchvision)."""
from __future__ import annotations

import torch
from torch import nn

# Blocks per stage for each supported depth (He et al. 2016, table 1).
RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
# Width of the stem and of the first stage's bottleneck (torchvision).
STEM_CHANNELS = 64
# torchvision's classifier size; fc exists in the release state dict but is unused.
IMAGENET_CLASSES = 1000


class BasicBlock(nn.Module):
    """Two 3x3 convs + identity (ResNet-18/34)."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 bottleneck, stride on the 3x3 (torchvision v1.5, ResNet-50)."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (conv1x1 + BN, keys downsample.0/.1) when the shape changes."""
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                         nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    """ResNet returning the four stage outputs c1..c4 (strides 4, 8, 16, 32)."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        block = Bottleneck if depth >= 50 else BasicBlock
        self.depth = depth
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = STEM_CHANNELS
        self.out_channels: tuple[int, ...] = ()
        for i, n in enumerate(RESNET_LAYERS[depth]):
            planes = STEM_CHANNELS * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(inplanes, planes, 2 if (i > 0 and j == 0) else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels += (inplanes,)
        self.fc = nn.Linear(inplanes, IMAGENET_CLASSES)  # unused; kept for the key layout
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,H,W) -> [c1 (B,C1,H/4,W/4), c2 (H/8), c3 (H/16), c4 (H/32)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        return feats
