"""Publisher process for test_messages: every sample message on its own topic."""

import sys

import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from msg_samples import samples  # noqa: E402


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('sample_publisher')
    qos = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {
        name: node.create_publisher(type(msg), f'samples/{name}', qos)
        for name, msg in samples().items()
    }
    msgs = samples()

    def tick() -> None:
        for name, pub in pubs.items():
            pub.publish(msgs[name])

    node.create_timer(0.2, tick)
    print('publishing', flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
