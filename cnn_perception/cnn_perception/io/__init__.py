"""Image conversion, image/video/camera sources and rosbag2 reading and writing."""
