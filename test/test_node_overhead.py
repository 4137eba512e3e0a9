"""hands_node's process setting for speed (issue 20): one glibc malloc arena."""
from __future__ import annotations

import platform

import pytest

from dir_ros.ros.process import share_main_malloc_arena


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_accepts_one_malloc_arena() -> None:
    """glibc accepts the node's M_ARENA_MAX request (it returns 1 on success), so the
    inference thread shares the main arena (a thread arena made the network 3.9-5.7 ms
    slower: dir_ros.ros.process.M_ARENA_MAX)."""
    assert share_main_malloc_arena() is True
