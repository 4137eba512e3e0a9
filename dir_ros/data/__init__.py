"""Frame sources with ground truth that evaluation and training both read: image folders,
synthetic hands, InterHand2.6M, test clips, RGB-D frames. Imports neither train nor eval.

Modules (imported on use):
  hands            a camera frame with posed hands (RawFrame, HandGeometry), hand-model
                   posing, the 61-value parameters, PCA <-> axis-angle, mirroring
  dataset          frames with ground truth (DatasetFrame, GtHand), the `folder` source
  sources          the make-bag source registry (SOURCES, register_source)
  bag_source       the make-bag `synthetic` source's options (no torch import)
  synthetic        seeded synthetic two-hand frames (SyntheticHands)
  interhand        InterHand2.6M v1.0 index and frames (InterHandFrames)
  render           z-buffer rasteriser: segmentation, dense-correspondence and shaded images
  clips            video clips made from one still photo (steadiness and tracking bench)
  depth_synthetic  synthetic RGB-D frames (posed open-hand meshes, noisy depth)
"""
