"""The package's front door: build_predictor(config) -> the backend the config asks for.

`backend: auto | dir | landmarks` (dir_ros/config.py, choose_backend):
  * dir: dir_ros.backends.dir.HandsPredictor (the DIR network);
  * landmarks: dir_ros.backends.landmarks.predictor.LandmarkPredictor (the hand front end's
    landmarks fitted with the hand model, no network).
auto runs DIR when `weights` names a checkpoint, the landmark backend otherwise. Both have
predict(rgb, K) -> FrameResult and reset(). No ROS imports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Union

from dir_ros.config import choose_backend, load_config


def build_predictor(config: Union[str, Path, Mapping[str, Any]]) -> Any:
    """The predictor a config asks for (see module docstring): HandsPredictor (DIR) or
    LandmarkPredictor; both have predict(rgb, K) -> FrameResult and reset()."""
    cfg = load_config(config)
    if choose_backend(str(cfg["backend"]), cfg["weights"]) == "landmarks":
        from dir_ros.backends.landmarks.predictor import LandmarkPredictor

        return LandmarkPredictor.from_config(cfg)
    from dir_ros.backends.dir import HandsPredictor

    return HandsPredictor.from_config(cfg)
