"""Algorithms: plain numpy / torch / onnxruntime / cv2. Never imports rclpy."""
