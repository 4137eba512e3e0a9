"""Evaluation tools: DIR metrics (metrics), rosbag2 I/O without ROS (bag), dataset sources
(dataset) and report files (report). Used by the ``dir-ros`` console script (dir_ros.cli).

Kept import-light: submodules are imported on use (no torch, no ROS).
"""
