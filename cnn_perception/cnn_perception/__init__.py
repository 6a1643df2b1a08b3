"""
CNN perception for drones as ROS 2 nodes.

`core` holds the algorithms (numpy / torch / onnxruntime, no rclpy); `io` converts and
reads images and bags; `nodes` are thin rclpy wrappers around `core`.
"""

import os

__version__ = '0.1.0'

# The project reports unreadable images and streams itself, in one clear line; OpenCV's
# own warnings for the same events would only add noise (set the variable to see them).
os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
