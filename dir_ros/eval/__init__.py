"""Evaluation tools: DIR metrics (pose_metrics, interpenetration, temporal), the accumulating
evaluator (evaluator), rosbag2 I/O without ROS (bag) and report files (report). Used by the
``dir-ros`` console script (dir_ros.cli).

Kept import-light: submodules are imported on use (no torch, no ROS).
"""
