"""Training DIR: InterHand2.6M in its own layout, a synthetic two-hand source, the paper's
recipe, checkpoints in the release layout, DDP through torchrun (gloo on CPUs).

Modules (imported on use; this package itself imports nothing heavy, so the CLI and the
make-bag source registry stay fast):
  render     z-buffer rasteriser: segmentation, dense-correspondence and shaded images
  sample     crop (release `cut_img` convention), augmentation, targets, batching
  interhand  InterHand2.6M v1.0 loader (annotations/<split>/*.json + images/<split>/...)
  synthetic  seeded synthetic two-hand frames (training and `make-bag --source synthetic`)
  bag_source the make-bag `synthetic` source's options (no torch import)
  recipe     training configuration (config/train/*.yaml), optimiser and schedule
  trainer    the loop: validation, checkpoints, resume, progress bars, loss curves
  ddp        torchrun / DistributedDataParallel helpers (exact 2B == 2 x B batching)
  cli        the `dir-ros train` subcommand
"""
