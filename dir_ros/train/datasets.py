"""Training datasets: the frames of a source (synthetic, InterHand2.6M) as DIR training
samples (dir_ros.train.sample.make_sample dicts), augmented deterministically by
(seed, epoch, frame) whatever the worker or process that loads them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from dir_ros.data.hands import BadFrameError, RawFrame
from dir_ros.data.interhand import InterHandFrames, InterHandIndex
from dir_ros.data.synthetic import SyntheticHands
from dir_ros.hand_model import HandModelArrays
from dir_ros.train.sample import AugmentConfig, BadSample, make_sample

class SyntheticDataset:
    """Training samples of frames [start, start + num_frames) of a SyntheticHands stream
    (same sample format as InterHandDataset). cache keeps rendered frames in memory."""

    def __init__(self, hands: SyntheticHands, num_frames: int, input_size: int,
                 root_joint: int = 0, augment: Optional[AugmentConfig] = None, seed: int = 0,
                 start: int = 0, cache: bool = False) -> None:
        if num_frames < 1:
            raise ValueError(f"a synthetic dataset needs at least one frame, got {num_frames}")
        self.hands = hands
        self.num_frames = int(num_frames)
        self.start = int(start)
        self.input_size = int(input_size)
        self.root_joint = int(root_joint)
        self.augment = augment
        self.seed = int(seed)
        self.cache: Optional[dict[int, RawFrame]] = {} if cache else None
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_frames

    def raw_frame(self, i: int) -> RawFrame:
        """Frame i of this dataset (rendered, or from the cache)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        frame = self.hands.frame(self.start + int(i))
        if self.cache is not None:
            self.cache[i] = frame
        return frame

    def __getitem__(self, i: int) -> dict[str, Any] | BadSample:
        """The training sample of frame i (augmented with the generator (seed, epoch, i))."""
        try:
            rng = None
            if self.augment is not None and self.augment.enabled:
                rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            return make_sample(self.raw_frame(int(i)), self.hands.tables, self.input_size,
                               self.root_joint, rng, self.augment)
        except BadFrameError as err:
            return BadSample(str(err))


class InterHandDataset(InterHandFrames):
    """Training samples (dir_ros.train.sample.make_sample dicts) of one InterHand2.6M split.

    Samples are deterministic: frame i of epoch e is augmented with the generator seeded by
    (seed, e, i), whatever the worker or process that loads it. A bad frame (see
    dir_ros/data/interhand.py) gives a BadSample; the trainer skips it or stops (bad_frames).
    """

    def __init__(self, root: str | Path, split: str, arrays: Mapping[str, HandModelArrays],
                 input_size: int, root_joint: int = 0, augment: Optional[AugmentConfig] = None,
                 seed: int = 0, bad_frames: str = "skip", max_frames: Optional[int] = None,
                 index: Optional[InterHandIndex] = None) -> None:
        super().__init__(root, split, arrays, bad_frames, max_frames, index)
        self.input_size = int(input_size)
        self.root_joint = int(root_joint)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def __getitem__(self, i: int) -> dict[str, Any] | BadSample:
        """The training sample of frame i, or a BadSample naming why it cannot be one."""
        try:
            frame = self.raw_frame(int(i))
            rng = None
            if self.augment is not None and self.augment.enabled:
                rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            return make_sample(frame, self.tables, self.input_size, self.root_joint, rng,
                               self.augment)
        except BadFrameError as err:
            return BadSample(str(err))
