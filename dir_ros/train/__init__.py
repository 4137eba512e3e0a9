"""Training DIR on InterHand2.6M in its own layout or synthetic two-hand frames (sources in
dir_ros/data): the paper's recipe, checkpoints in the release layout, DDP through torchrun
(gloo on CPUs).

Modules (imported on use; this package itself imports nothing heavy, so the CLI and the
make-bag source registry stay fast):
  sample     crop (release `cut_img` convention), augmentation, targets, batching
  datasets   InterHand2.6M and synthetic frames (dir_ros/data) as training samples
  recipe     training configuration (config/train/*.yaml), optimiser and schedule
  trainer    the loop: validation, checkpoints, resume, progress bars, loss curves
  files      what a run writes: atomic checkpoint / text writes, the loss-curve PNG
  ddp        torchrun / DistributedDataParallel helpers (exact 2B == 2 x B batching)
  cli        the `dir-ros train` subcommand
"""
