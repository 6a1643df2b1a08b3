"""classifier_node: the CNN image classifier (demo D4) on a live image stream.

Subscribes `image` (or `image/compressed` with image_transport: compressed); publishes
`classifier/classification` (top-k, header copied from the image), `classifier/labels`
(LabelMap, transient local, once) and `classifier/overlay` (+ `/compressed`, only computed
while someone subscribes). The work per frame is `steps.classify.ClassifierStep`, the same
that `bag process` runs; latest frame wins, frames the model cannot keep up with are
dropped, not queued.
"""

import sys

from cnn_perception_msgs.msg import LabelMap

from cnn_perception import contract
from cnn_perception.nodes.common import QOS_BY_KIND, run_node
from cnn_perception.nodes.frame_node import FrameNode


class ClassifierNode(FrameNode):
    key = 'classifier'
    task = 'classifying'

    def on_configure_step(self) -> None:
        qos = QOS_BY_KIND[contract.LABELS.qos]
        self.labels_pub = self.make_publisher(LabelMap, contract.LABELS.name, qos)

    def on_start(self) -> None:
        labels = self.step.labels_msg()
        labels.header.stamp = self.get_clock().now().to_msg()
        self.labels_pub.publish(labels)

    def on_cleanup_step(self) -> None:
        self.drop_publisher(self.labels_pub)


def main(args=None) -> int:
    return run_node(ClassifierNode, 'classifier_node', args)


if __name__ == '__main__':
    sys.exit(main())
