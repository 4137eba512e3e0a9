"""What a robot consumes, from each fitted hand (no ROS): keypoint frames for TF
(joint_frames), grasp state with a hysteretic pinch flag (grasp), and robot-hand joint
commands through dex-retargeting (retarget; optional dependency, requirements/retarget.txt).

Every input is a fitted hand of dir_ros.common.results.HandsResult: 21 keypoints in the contract
order (wrist; thumb, index, middle, ring, pinky, each base to tip), metres, camera optical
frame, and the hand model's root orientation (MANO root rotation, quaternion xyzw).
"""
