"""pip install of the dir_ros core (network, hand model, predictor, evaluation) without ROS.

The ROS 2 package itself is built by colcon from CMakeLists.txt (messages + node); this file
only serves `pip install .` / `pip install -e .` for use and tests outside a ROS workspace.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements() -> list[str]:
    """Core runtime requirements: requirements/core.txt minus test tools, plus torch."""
    lines = (HERE / "requirements" / "core.txt").read_text().splitlines()
    reqs = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return ["torch>=2.2"] + [r for r in reqs if not r.startswith(("pytest", "cv-bridge", "import-linter", "grimp"))]


setup(
    name="dir_ros",
    version="0.1.0",
    description="Two interacting hands from one RGB camera (DIR, ICCV 2023) for ROS 2",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dir_ros", "dir_ros.*"], exclude=["dir_ros.ros", "dir_ros.ros.*"]),
    install_requires=_requirements(),
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["dir-ros = dir_ros.cli:main"]},
    # Data the core reads at run time, at the same share/dir_ros paths colcon installs them to
    # (dir_ros.hand_model.open_hand_dir and the bag tools look there after a pip install).
    data_files=[
        ("share/dir_ros/weights/open_hand", [str(p.relative_to(HERE)) for p in sorted((HERE / "weights/open_hand").glob("*")) if p.is_file()]),
        ("share/dir_ros/msg", [str(p.relative_to(HERE)) for p in sorted((HERE / "msg").glob("*.msg"))]),
        ("share/dir_ros/config", [str(p.relative_to(HERE)) for p in sorted((HERE / "config").glob("*.yaml"))]),
        ("share/dir_ros/config/model", [str(p.relative_to(HERE)) for p in sorted((HERE / "config/model").glob("*.yaml"))]),
        ("share/dir_ros/config/train", [str(p.relative_to(HERE)) for p in sorted((HERE / "config/train").glob("*.yaml"))]),
    ],
    include_package_data=False,
)
