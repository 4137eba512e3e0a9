"""Images in: ROS image decoding and camera / video / photo sources."""
