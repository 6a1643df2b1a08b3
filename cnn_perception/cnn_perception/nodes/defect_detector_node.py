"""defect_detector_node: the unsupervised CNN defect detector (demo D9) on a live stream.

Subscribes `image` (or `image/compressed`); publishes `defects/detections` (a
DetectionArray for every processed frame -- empty when clean -- with `image_score`, header
copied) and `defects/heatmap` (+ `/compressed`: jet overlay with boxes, only computed
while someone subscribes). The work per frame is `steps.defects.DefectStep`, the same
that `bag process` runs. Latest frame wins.
"""

import sys

from cnn_perception.nodes.common import run_node
from cnn_perception.nodes.frame_node import FrameNode


class DefectDetectorNode(FrameNode):
    step_key = 'defects'
    node_name = 'defect_detector'
    task = 'defect scoring'


def main(args=None) -> int:
    return run_node(DefectDetectorNode, 'defect_detector_node', args)


if __name__ == '__main__':
    sys.exit(main())
