"""DIR network (Ren et al., ICCV 2023): modules, outputs, losses, release checkpoint IO."""
from .backbone import ResNet
from .checkpoint import CheckpointMismatchError, LoadReport, WeightsFileError, load_release_checkpoint
from .config import DEFAULT_CONFIG, load_model_config, resolve_config
from .dir import DIR, build_dir
from .losses import DIRTarget, HandTarget, dir_losses, lovasz_softmax
from .normalize import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from .outputs import DIROutput, HandPrediction, LevelOutput

__all__ = [
    "ResNet", "CheckpointMismatchError", "LoadReport", "WeightsFileError", "load_release_checkpoint",
    "DEFAULT_CONFIG", "load_model_config", "resolve_config", "DIR", "build_dir",
    "DIRTarget", "HandTarget", "dir_losses", "lovasz_softmax",
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize_image",
    "DIROutput", "HandPrediction", "LevelOutput",
]
