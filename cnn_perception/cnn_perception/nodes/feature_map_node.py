"""feature_map_node: what the CNN sees (demo D10), live in rviz.

Publishes `feature_maps/mosaic` (the chosen layers stacked, each labelled with its name
and shape) and `feature_maps/cam` (class activation map over the frame), each with a
`/compressed` twin. Nothing is computed while nobody subscribes; with a subscriber, at
most `max_rate_hz` frames/s. The work per frame is `steps.features.FeatureStep`.
"""

import sys

from cnn_perception.nodes.common import run_node
from cnn_perception.nodes.frame_node import FrameNode


class FeatureMapNode(FrameNode):
    key = 'features'
    task = 'feature maps'

    def on_start(self) -> None:
        self.diag.set(self.diag.level, 'idle: no subscriber to feature_maps/*', inferences=0)


def main(args=None) -> int:
    return run_node(FeatureMapNode, 'feature_map_node', args)


if __name__ == '__main__':
    sys.exit(main())
