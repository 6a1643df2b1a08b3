"""rclpy nodes: thin wrappers that convert messages, call `core` and publish."""
