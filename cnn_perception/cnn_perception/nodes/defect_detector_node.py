"""defect_detector_node: the unsupervised CNN defect detector (demo D9) on a live stream.

Subscribes `image` (or `image/compressed`) and, when their parameters name them, the
drone's position (`fix_topic` NavSatFix, `pose_topic` PoseStamped, `odom_topic`
Odometry); publishes `defects/detections` (a DetectionArray for every processed frame --
empty when clean -- with `image_score`, header copied, Detection.id = track id),
`defects/events` (one DefectEvent when a defect is confirmed and one when it ends: crop,
position) and `defects/heatmap` (+ `/compressed`: jet overlay with boxes, only computed
while someone subscribes). The work per frame is `steps.defects.DefectStep`, the same
that `bag process` and `report` run. Latest frame wins.
"""

import sys

from rclpy.qos import qos_profile_sensor_data

from cnn_perception.contract import message_class
from cnn_perception.nodes.common import run_node
from cnn_perception.nodes.frame_node import FrameNode
from cnn_perception.steps.inspection import POSITION_TYPES


class DefectDetectorNode(FrameNode):
    key = 'defects'
    task = 'defect scoring'

    def on_start(self) -> None:
        self.position_subs = []
        inspector = self.step.inspector
        if inspector is None:
            return
        # best effort matches reliable and best-effort publishers (MAVROS: best effort)
        for msgtype, param in POSITION_TYPES.items():
            if self.params[param]:
                self.position_subs.append(
                    self.create_subscription(
                        message_class(msgtype),
                        self.params[param],
                        lambda m, t=msgtype: inspector.add_position(t, m),
                        qos_profile_sensor_data,
                    )
                )

    def on_stop(self) -> None:
        for sub in self.position_subs:
            self.destroy_subscription(sub)
        # A run that ends or pauses (^C, end of a replay, deactivate between inspection
        # legs) ends its open defect tracks too.
        if self.context.ok():
            from std_msgs.msg import Header

            for topic, msg in self.step.finish(Header()).messages:
                self.pubs[topic].publish(msg)


def main(args=None) -> int:
    return run_node(DefectDetectorNode, 'defect_detector_node', args)


if __name__ == '__main__':
    sys.exit(main())
