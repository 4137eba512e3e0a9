"""ROS 2 (rclpy) side of dir_ros: the hands_node and its message helpers.

Everything ROS lives here; the core package (dir_ros minus dir_ros.ros) imports no ROS.
"""
