"""The DIR network: backbone -> initial regressor -> refinement decoder (+ aux heads).

Follows shared/spec/DIR_ARCHITECTURE.md; the release configuration's state dict has the
authors' checkpoint keys, order and shapes. Where the spec is silent:
- upsampling is bilinear with align_corners=False; concatenations are (upsampled, skip),
  (fused, projected), (joint features, previous params), (left, right, previous offset);
- joint features are flattened joint-major ((B,21,64) -> j*64 + c);
- a third stage (num_stages 3) runs at 1/4 resolution on c1 with a 1x1 fusion conv;
  num_stages 0 has no decoder and no aux heads;
- 'transformer off' keeps only the head (LayerNorm + Linear) as a per-token projection;
  'gcn off' skips the GCN; projection 'none' feeds only the fused map to enhance_layer;
  'single_plane_feature' sums the 20 bone planes per hand (2*64 channels);
  'multi_plane_heatmap' paints max(0, 1 - d/distance) per bone (2*20 channels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dir_ros.hand_model import (SIDES, HandLayer, HandModelArrays, load_hand_model,
                                make_hand_layers, open_hand_dir)

from .backbone import ResNet
from .config import resolve_config
from .decoder import Decoder
from .init_regressor import InitRegressor
from .losses import SEG_CLASS_WEIGHTS, DIRTarget, WeightedCrossEntropy, dir_losses
from .outputs import DIROutput


class DIR(nn.Module):
    """Two-hand reconstruction network. forward(images (B,3,H,W) ImageNet-normalised RGB,
    H = W = input_size) -> DIROutput."""

    def __init__(self, config: dict[str, Any], arrays: dict[str, HandModelArrays]) -> None:
        super().__init__()
        self.config = config
        self.input_size: int = int(config["input_size"])
        root = int(config["root_joint"])
        self.backbone = ResNet(int(config["backbone"]["depth"]))
        chans = self.backbone.out_channels
        tcfg = dict(config["transformer"])
        gcfg, pcfg = config["gcn"], config["projection"]
        # materialize_planes: the release's computation throughout (the speed baseline).
        release_compute = bool(pcfg["materialize_planes"])
        self.init_regressor = InitRegressor(chans[3], make_hand_layers(arrays, root),
                                            gemm_attention=not release_compute)
        self.decoder = Decoder(
            chans, self.input_size,
            [make_hand_layers(arrays, root) for _ in range(int(config["num_stages"]))],
            channels=int(config["decoder_channels"]), aux_heads=bool(config["aux_heads"]),
            distance_per_cell=float(pcfg["distance_per_cell"]),
            fusion_kernels=tuple(pcfg["fusion_kernels"]),
            joint_channels=int(config["joint_channels"]),
            token_channels=int(config["token_channels"]),
            gcn=bool(gcfg["enabled"]), gcn_layers=int(gcfg["layers"]),
            transformer=tcfg, projection=str(pcfg["mode"]),
            materialize_planes=release_compute)
        if self.decoder.aux_heads:
            # Part of the release state dict (`seg_loss.weight`).
            self.seg_loss = WeightedCrossEntropy(SEG_CLASS_WEIGHTS)

    @property
    def hand_layers(self) -> dict[str, HandLayer]:
        """side -> HandLayer of the final level."""
        owner = self.init_regressor if self.decoder.num_stages == 0 else getattr(
            self.decoder, f"projecter_{self.decoder.suffixes[-1]}").regressor
        return {"left": owner.mano_layer_left, "right": owner.mano_layer_right}

    def faces(self, side: str) -> torch.Tensor:
        """(F,3) int64 triangles of side's hand model."""
        return self.hand_layers[side].faces

    def forward(self, images: torch.Tensor) -> DIROutput:
        """images (B,3,S,S) -> DIROutput (levels: initial + one per stage)."""
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"expected {self.input_size}x{self.input_size} input, got "
                             f"{tuple(images.shape[-2:])}")
        feats = self.backbone(images)
        init = self.init_regressor(feats[3])
        levels, seg, dense = self.decoder(feats, init)
        return DIROutput(levels=[init, *levels], seg=seg, dense=dense)

    def compute_loss(self, output: DIROutput, target: DIRTarget) -> dict[str, torch.Tensor]:
        """Named weighted loss terms + 'total' (see losses.dir_losses)."""
        return dir_losses(output, target, {s: self.faces(s) for s in SIDES},
                          weights=self.config.get("loss"), seg_loss=getattr(self, "seg_loss",
                                                                            None))


def build_dir(config: dict | str | Path | None = None,
              hand_model_dir: str | Path | None = None, *,
              arrays: dict[str, HandModelArrays] | None = None) -> DIR:
    """Build DIR from a config (dict or YAML path; None = release defaults).

    Hand model, first that applies: `arrays` (side -> HandModelArrays, e.g. in tests),
    `hand_model_dir`, the config's `hand_model` folder, the open model weights/open_hand.
    """
    cfg = resolve_config(config)
    if arrays is None:
        folder = hand_model_dir or cfg.get("hand_model") or open_hand_dir()
        arrays = load_hand_model(Path(folder).expanduser())
    return DIR(cfg, arrays)
