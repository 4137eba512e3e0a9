"""Launch dir_ros hands_node (and optionally RViz).

ros2 launch dir_ros hands.launch.py image:=/camera/color/image_raw \
    camera_info:=/camera/color/camera_info [config:=<params.yaml>] [namespace:=hands] \
    [use_sim_time:=true] [rviz:=true]
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    """hands_node with topic remaps, a params file, namespace, sim time and RViz switch."""
    share = get_package_share_directory("dir_ros")
    use_sim_time = LaunchConfiguration("use_sim_time")
    args = [
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw",
                              description="Input sensor_msgs/Image topic (remapped to `image`)."),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info",
                              description="sensor_msgs/CameraInfo topic of that camera."),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "hands.yaml"),
                              description="Params file of hands_node (see config/hands.yaml)."),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its relative topics."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay)."),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="Start RViz with rviz/hands.rviz."),
    ]
    hands = Node(
        package="dir_ros",
        executable="hands_node",
        name="hands_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("config"),
                    {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
        remappings=[("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "rviz", "hands.rviz")],
        parameters=[{"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription(args + [hands, rviz])
