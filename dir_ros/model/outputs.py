"""Output containers of the DIR network and the params -> hand prediction step."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from dir_ros.hand_model import CAMERA_SLICE  # (s, tx, ty) inside the 64 hand parameters

# Metric normaliser of the release: root-relative xyz and the offset are divided by 0.15 m.
XYZ_SCALE = 0.15


@dataclass
class HandPrediction:
    """One hand at one level. B = batch, V = hand-model vertices.

    joints_uv (B,21,2): keypoints, normalised uv in [-1,1] over the crop
        (pixel = (uv + 1) * input_size / 2).
    verts_uv (B,V,2): mesh vertices, same units.
    joints_xyz (B,21,3): keypoints in metres, relative to the root keypoint.
    verts_xyz (B,V,3): mesh vertices in metres, same frame.
    camera (B,3): weak-perspective (s, tx, ty): uv = s * xyz[..., :2] + (tx, ty).
    params (B,64): rot6d(6) | PCA(45) | betas(10) | camera(3).
    """
    joints_uv: torch.Tensor
    verts_uv: torch.Tensor
    joints_xyz: torch.Tensor
    verts_xyz: torch.Tensor
    camera: torch.Tensor
    params: torch.Tensor

    def detach(self) -> "HandPrediction":
        """Copy with every tensor detached (a stage consumes the previous one's this way)."""
        return HandPrediction(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


@dataclass
class LevelOutput:
    """Both hands at one level (0 = initial regression, then one per refinement stage).

    offset (B,3): (right root - left root) / 0.15, root = the configured root keypoint.
    """
    left: HandPrediction
    right: HandPrediction
    offset: torch.Tensor

    def hand(self, side: str) -> HandPrediction:
        """The prediction of side 'left' or 'right'."""
        return {"left": self.left, "right": self.right}[side]

    def detach(self) -> "LevelOutput":
        """Copy with every tensor detached."""
        return LevelOutput(self.left.detach(), self.right.detach(), self.offset.detach())


@dataclass
class DIROutput:
    """Everything the network returns for a batch.

    levels: initial regression then each refinement stage (len = num_stages + 1).
    seg (B,3,h,w) | None: logits background / left / right at the last stage's resolution
        (32x32 for the release), None when aux heads are off or there is no stage.
    dense (B,3,h,w) | None: dense-correspondence colour map, same resolution.
    """
    levels: list[LevelOutput]
    seg: torch.Tensor | None = None
    dense: torch.Tensor | None = None

    @property
    def final(self) -> LevelOutput:
        """The last (most refined) level."""
        return self.levels[-1]


# Pytree nodes for torch.export / torch.compile: the network returns these containers, so
# they must flatten to tensors (None fields, e.g. seg without aux heads, are empty leaves).
for _cls in (HandPrediction, LevelOutput, DIROutput):
    torch.export.register_dataclass(_cls, serialized_type_name=f"dir_ros.model.{_cls.__name__}")


def weak_perspective(xyz: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Project root-relative points xyz (B,N,3) m with camera (B,3) = (s,tx,ty) to uv (B,N,2)."""
    camera = camera.to(xyz.dtype)
    return camera[:, None, :1] * xyz[..., :2] + camera[:, None, 1:3]


def hand_prediction(layer: nn.Module, params: torch.Tensor) -> HandPrediction:
    """Run a HandLayer on params (B,64) and project joints and mesh with the params' camera."""
    out = layer.forward_params(params)
    camera = params[:, CAMERA_SLICE]
    verts, joints = out.vertices, out.joints  # the layer's dtype (float32 under autocast)
    return HandPrediction(joints_uv=weak_perspective(joints, camera),
                          verts_uv=weak_perspective(verts, camera),
                          joints_xyz=joints, verts_xyz=verts, camera=camera, params=params)
