"""dir_ros: two interacting hands from one RGB camera (DIR, ICCV 2023) for ROS 2.

Kept light on purpose: after `colcon build` the generated message module `dir_ros.msg`
lives in the installed copy of this package, and importing it must not pull in torch.
`extend_path` lets the source tree (e.g. tests run from the repository root) find that
generated `dir_ros.msg` in the install space too.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
