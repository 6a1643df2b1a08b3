"""
CNN perception for drones as ROS 2 nodes.

`core` holds the algorithms (numpy / torch / onnxruntime, no rclpy); `io` converts and
reads images and bags; `nodes` are thin rclpy wrappers around `core`.
"""

__version__ = '0.1.0'
