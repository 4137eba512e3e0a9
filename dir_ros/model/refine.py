"""One refinement block (the release's `projecter_*`): image + joint features -> new
hand parameters, then the new joints' features projected back onto the image grid."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dir_ros.hand_model import BONE_PARENTS, NUM_KEYPOINTS, NUM_PARAMS, SIDES

from .bone_conv import bone_plane_conv
from .gcn import SkeletonGCN
from .outputs import XYZ_SCALE, LevelOutput, hand_prediction
from .projection import (bone_end_features, bone_end_weights, bone_tent_heatmaps,
                         make_grid, project_bone_features, uv_to_feature_px)
from .transformer import Interaction

NUM_BONES = len(BONE_PARENTS)
PROJECTION_MODES = ("none", "single_plane_feature", "multi_plane_heatmap",
                    "multi_plane_feature")


def point_mlp(in_ch: int, out_ch: int) -> nn.Sequential:
    """Conv1d in->out, BN1d, ReLU, Conv1d out->out on (B,C,N) (keys 0, 1, 3)."""
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, 1), nn.BatchNorm1d(out_ch),
                         nn.ReLU(inplace=True), nn.Conv1d(out_ch, out_ch, 1))


class JointSampler(nn.Module):
    """Bilinear sampling of an image feature at joint uv, then `filters` (point MLP)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.filters = point_mlp(in_ch, out_ch)

    def forward(self, feat: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """feat (B,C,S,S), uv (B,N,2) normalised [-1,1] -> (B,out,N)."""
        grid = uv.detach().to(feat.dtype)[:, :, None, :]
        # torch defaults (align_corners False, zero padding), as in the release.
        sampled = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        return self.filters(sampled[..., 0])


class ParamRegressor(nn.Module):
    """Joint features -> new 64 params per hand (not residual) and new offset."""

    def __init__(self, feat_dim: int, hand_layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.mano_layer_right = hand_layers["right"]
        self.mano_layer_left = hand_layers["left"]
        flat = NUM_KEYPOINTS * feat_dim
        self.mano_left = nn.Linear(flat + NUM_PARAMS, NUM_PARAMS)
        self.mano_right = nn.Linear(flat + NUM_PARAMS, NUM_PARAMS)
        self.offset = nn.Linear(2 * flat + 3, 3)

    def forward(self, f_left: torch.Tensor, f_right: torch.Tensor, prev: LevelOutput
                ) -> LevelOutput:
        """f_* (B,21,D) joint features, prev detached -> new LevelOutput."""
        fl, fr = f_left.flatten(1), f_right.flatten(1)
        p_left = self.mano_left(torch.cat([fl, prev.left.params.to(fl.dtype)], 1))
        p_right = self.mano_right(torch.cat([fr, prev.right.params.to(fr.dtype)], 1))
        offset = self.offset(torch.cat([fl, fr, prev.offset.to(fl.dtype)], 1))
        return LevelOutput(left=hand_prediction(self.mano_layer_left, p_left),
                           right=hand_prediction(self.mano_layer_right, p_right),
                           offset=offset)


class RefineBlock(nn.Module):
    """Image feature (B,C,S,S) + previous level -> (new level, projected map (B,C,S,S) | None).

    size: S; distance: bone band half-width in feature px (release: 1 at 16, 2 at 32);
    fusion_kernel: kernel of the first conv fusing the projected planes (release 3);
    materialize_planes: 'multi_plane_feature' only: build the 2*20*C bone planes and run
    that conv on them (the release's computation) instead of the factorised bone_plane_conv
    (same result and weights, ~30x fewer MACs).
    """

    def __init__(self, size: int, channels: int, hand_layers: dict[str, nn.Module], *,
                 distance: float, joint_channels: int = 128, token_channels: int = 64,
                 gcn: bool = True, gcn_layers: int = 4, transformer: dict | None = None,
                 projection: str = "multi_plane_feature", fusion_kernel: int = 3,
                 materialize_planes: bool = False) -> None:
        super().__init__()
        if projection not in PROJECTION_MODES:
            raise ValueError(f"projection mode {projection!r} not in {PROJECTION_MODES}")
        if fusion_kernel < 1 or fusion_kernel % 2 == 0:
            raise ValueError(f"fusion_kernel must be an odd positive size (1, 3, ...), got "
                             f"{fusion_kernel}")
        self.size, self.distance, self.projection = size, float(distance), projection
        self.materialize_planes = bool(materialize_planes)
        self.register_buffer("img_gird", make_grid(size))  # release spelling, persistent
        if gcn:
            self.gcn_left = SkeletonGCN(joint_channels, gcn_layers)
            self.gcn_right = SkeletonGCN(joint_channels, gcn_layers)
        self.img2joint_left = JointSampler(channels, joint_channels)
        self.img2joint_right = JointSampler(channels, joint_channels)
        self.pos_emb_left = point_mlp(3, joint_channels)
        self.pos_emb_right = point_mlp(3, joint_channels)
        self.global_pos_emb = point_mlp(3, joint_channels)
        self.interaction = Interaction(2 * NUM_KEYPOINTS, joint_channels, token_channels,
                                       **(transformer or {}))
        proj_in = {"none": 0, "single_plane_feature": 2 * token_channels,
                   "multi_plane_heatmap": 2 * NUM_BONES,
                   "multi_plane_feature": 2 * NUM_BONES * token_channels}[projection]
        if projection in ("single_plane_feature", "multi_plane_feature"):
            self.proj_feat_emb = point_mlp(token_channels, token_channels)
        if proj_in:
            self.fusion = nn.Sequential(
                nn.Conv2d(proj_in, channels, fusion_kernel, padding=fusion_kernel // 2),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1))
        self.regressor = ParamRegressor(token_channels, hand_layers)

    @property
    def out_channels(self) -> int:
        """Channels of the projected map (0 when projection is 'none')."""
        return 0 if self.projection == "none" else self.fusion[-1].out_channels

    def joint_features(self, feat: torch.Tensor, prev: LevelOutput) -> torch.Tensor:
        """Steps 1-5: tokens (B,42,D) for left then right joints (SIDES order)."""
        tokens = []
        for side in SIDES:
            hand = prev.hand(side)
            xyz = hand.joints_xyz.to(feat.dtype).transpose(1, 2) / XYZ_SCALE  # (B,3,21)
            x = getattr(self, f"img2joint_{side}")(feat, hand.joints_uv)
            x = x + getattr(self, f"pos_emb_{side}")(xyz)
            if hasattr(self, f"gcn_{side}"):
                x = getattr(self, f"gcn_{side}")(x.transpose(1, 2)).transpose(1, 2)
            sign = -1.0 if side == "left" else 1.0
            shift = (sign * 0.5) * prev.offset.to(feat.dtype)[:, :, None]
            tokens.append((x + self.global_pos_emb(xyz + shift)).transpose(1, 2))
        return self.interaction(torch.cat(tokens, dim=1))

    def embed_projected(self, feats: torch.Tensor) -> torch.Tensor:
        """proj_feat_emb on (B,42,D) tokens, run once per hand as in the release: in
        training mode its BatchNorm then normalises each hand with that hand's own batch
        statistics (and updates the running statistics once per hand)."""
        halves = feats.split(NUM_KEYPOINTS, dim=1)
        return torch.cat([self.proj_feat_emb(h.transpose(1, 2)).transpose(1, 2)
                          for h in halves], dim=1)

    def project(self, feats: torch.Tensor, level: LevelOutput) -> torch.Tensor | None:
        """Step 7: joint features (B,42,D) + new 2D joints -> fused map (B,C,S,S) | None."""
        if self.projection == "none":
            return None
        if self.projection != "multi_plane_heatmap":
            feats = self.embed_projected(feats)
        if self.projection == "multi_plane_feature" and not self.materialize_planes:
            return self._project_factorised(feats, level)
        b, s = feats.shape[0], self.size
        planes = []
        for i, side in enumerate(SIDES):
            pts = uv_to_feature_px(level.hand(side).joints_uv, s)
            if self.projection == "multi_plane_heatmap":
                planes.append(bone_tent_heatmaps(pts, self.img_gird, BONE_PARENTS,
                                                 self.distance).to(feats.dtype))
                continue
            w = bone_end_weights(pts, self.img_gird, BONE_PARENTS, self.distance)
            f = feats[:, i * NUM_KEYPOINTS:(i + 1) * NUM_KEYPOINTS]
            p = project_bone_features(f, w, BONE_PARENTS)          # (B,K,C,P)
            planes.append(p.sum(1) if self.projection == "single_plane_feature" else p)
        maps = torch.cat([p.reshape(b, -1, s, s) for p in planes], dim=1)
        return self.fusion(maps)

    def _project_factorised(self, feats: torch.Tensor, level: LevelOutput) -> torch.Tensor:
        """'multi_plane_feature' without building the planes: embedded joint features
        (B,42,D) + new 2D joints -> fused map (B,C,S,S), equal to project() with
        materialize_planes (fusion[0] run as bone_plane_conv with its own weight and bias)."""
        s = self.size
        weights, ends = [], []
        for i, side in enumerate(SIDES):
            pts = uv_to_feature_px(level.hand(side).joints_uv, s)
            w = bone_end_weights(pts, self.img_gird, BONE_PARENTS, self.distance)
            weights.append(w.to(feats.dtype).unflatten(-1, (s, s)))   # (B,K,2,S,S)
            f = feats[:, i * NUM_KEYPOINTS:(i + 1) * NUM_KEYPOINTS]
            ends.append(bone_end_features(f, BONE_PARENTS))            # (B,K,2,D)
        conv = self.fusion[0]
        x = bone_plane_conv(torch.stack(weights, 1), torch.stack(ends, 1), conv.weight,
                            conv.bias, conv.padding,
                            bone_blocks=len(SIDES) * len(BONE_PARENTS))
        for layer in list(self.fusion)[1:]:
            x = layer(x)
        return x

    def forward(self, feat: torch.Tensor, prev: LevelOutput
                ) -> tuple[LevelOutput, torch.Tensor | None]:
        """feat (B,C,S,S), prev (used detached) -> (new level, projected map | None)."""
        prev = prev.detach()
        feats = self.joint_features(feat, prev)                    # (B,42,D)
        level = self.regressor(feats[:, :NUM_KEYPOINTS], feats[:, NUM_KEYPOINTS:], prev)
        return level, self.project(feats, level)
