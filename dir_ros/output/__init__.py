"""Outputs without ROS: message field layout, overlays, point clouds."""
