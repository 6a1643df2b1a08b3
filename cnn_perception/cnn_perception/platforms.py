"""The node graph per platform, in one pure-Python place (no rclpy, no launch).

Both the launch files (on a robot with `ros2 launch`) and the one-process `pipeline`
(anywhere) build the system from `node_entries()`, so they cannot drift apart. This
module is unit-tested without ROS.
"""

from dataclasses import dataclass, field
import importlib.util
import os
from pathlib import Path

from cnn_perception.contract import CAMERA_IMAGE, IMAGE_INPUT, NAMESPACE, split_compressed

PLATFORMS = ('desktop', 'jetson', 'pi')
# Platforms whose node processes hand freed heap pages back every second
# (runtime.keep_heap_small): memory over speed, for the Pi's 450 MB budget.
TRIM_HEAP = ('pi',)
DEFAULT_NAMESPACE = NAMESPACE
IMAGE_TOPIC = CAMERA_IMAGE.name


@dataclass(frozen=True)
class NodeSpec:
    key: str  # what --nodes and enable_<key> call it
    name: str  # ROS node name
    executable: str  # console script (ros2 run cnn_perception <executable>)
    module: str  # python module holding the Node class
    cls: str  # Node class name
    remappings: dict[str, str] = field(default_factory=dict)

    def available(self) -> bool:
        """Whether this node is implemented in this build (not faked when it is not)."""
        return importlib.util.find_spec(self.module) is not None


NODES: dict[str, NodeSpec] = {
    'camera': NodeSpec(
        'camera', 'camera', 'camera_node', 'cnn_perception.nodes.camera_node', 'CameraNode'
    ),
    'classifier': NodeSpec(
        'classifier',
        'classifier',
        'classifier_node',
        'cnn_perception.nodes.classifier_node',
        'ClassifierNode',
        {IMAGE_INPUT: IMAGE_TOPIC},
    ),
    'defects': NodeSpec(
        'defects',
        'defect_detector',
        'defect_detector_node',
        'cnn_perception.nodes.defect_detector_node',
        'DefectDetectorNode',
        {IMAGE_INPUT: IMAGE_TOPIC},
    ),
    'features': NodeSpec(
        'features',
        'feature_map',
        'feature_map_node',
        'cnn_perception.nodes.feature_map_node',
        'FeatureMapNode',
        {IMAGE_INPUT: IMAGE_TOPIC},
    ),
}


def config_dir() -> Path:
    """config/ of the installed package (ament index), else of the source tree."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        cand = Path(prefix) / 'share' / 'cnn_perception' / 'config'
        if prefix and cand.is_dir():
            return cand
    return Path(__file__).resolve().parents[1] / 'config'


def params_file(platform: str) -> Path:
    if platform not in PLATFORMS:
        raise ValueError(f'unknown platform {platform!r}: use one of {", ".join(PLATFORMS)}')
    return config_dir() / f'{platform}.yaml'


def parse_nodes(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(',') if k.strip()]
    unknown = [k for k in keys if k not in NODES]
    if unknown:
        raise ValueError(f'unknown node(s) {", ".join(unknown)}: use {", ".join(NODES)}')
    return keys


@dataclass(frozen=True)
class NodeEntry:
    spec: NodeSpec
    namespace: str
    params_file: Path
    overrides: dict
    remappings: dict[str, str]


def node_entries(
    platform: str = 'desktop',
    nodes: list[str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    source: str | None = None,
    params: Path | None = None,
    image_topic: str | None = None,
) -> list[NodeEntry]:
    """List the nodes to start, each with its namespace, parameters file and remappings.

    `source` overrides the camera's `source` parameter; `image_topic` makes the
    processing nodes listen to another topic (a bag being replayed, camera off); a topic
    ending in `/compressed` is a CompressedImage stream: the nodes subscribe to it with
    `image_transport: compressed`, as image_transport's compressed subscriber would.
    """
    pfile = Path(params) if params else params_file(platform)
    keys = nodes if nodes is not None else list(NODES)
    out = []
    for key in keys:
        spec = NODES[key]
        overrides = {'source': source} if key == 'camera' and source else {}
        remap = dict(spec.remappings)
        if image_topic and IMAGE_INPUT in remap:
            base, compressed = split_compressed(image_topic)
            remap[IMAGE_INPUT] = base
            if compressed:
                overrides['image_transport'] = 'compressed'
        out.append(NodeEntry(spec, namespace, pfile, overrides, remap))
    return out
