"""The topic contract in code: namespace, topic names, message types and QoS (no rclpy).

Nodes, launch files, bag tools, bench, demo and tests take their names from here, and a
test checks the README's topic table against `TOPICS`, so the prose cannot drift from the
code. Topic names are relative to the node's namespace (default `NAMESPACE`); `/diagnostics`
is absolute. QoS is named by kind (see `nodes/common.py` for the profiles):

- `image_in`: sensor data (best effort, keep last 1) -- camera frames in and out;
- `result`: reliable, depth 10 -- every result message;
- `output_image`: reliable, depth 1 -- overlays for people (rviz, Foxglove); reliable so
  both reliable and best-effort viewers match;
- `latched`: reliable, transient local, depth 1 -- published once, seen by late joiners.
"""

from dataclasses import dataclass

NAMESPACE = '/cnn_perception'
COMPRESSED_SUFFIX = '/compressed'  # image_transport's name for the compressed twin


@dataclass(frozen=True)
class Topic:
    name: str  # relative to the namespace unless it starts with '/'
    type: str  # ROS interface type, 'pkg/msg/Name'
    qos: str  # image_in | result | output_image | latched
    node: str  # key of the publishing node (platforms.NODES)
    what: str  # one line for the docs

    def full(self, namespace: str = NAMESPACE) -> str:
        if self.name.startswith('/'):
            return self.name
        return f'{namespace.rstrip("/")}/{self.name}'


IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'

CAMERA_IMAGE = Topic('camera/image_raw', IMAGE, 'image_in', 'camera', 'camera frames')
CAMERA_IMAGE_COMPRESSED = Topic(
    'camera/image_raw/compressed',
    COMPRESSED_IMAGE,
    'image_in',
    'camera',
    'JPEG twin of the frames, only while subscribed',
)
CAMERA_INFO = Topic(
    'camera/camera_info', 'sensor_msgs/msg/CameraInfo', 'image_in', 'camera', 'calibration'
)
CLASSIFICATION = Topic(
    'classifier/classification',
    'cnn_perception_msgs/msg/Classification',
    'result',
    'classifier',
    'top-k classes per frame',
)
LABELS = Topic(
    'classifier/labels', 'cnn_perception_msgs/msg/LabelMap', 'latched', 'classifier', 'labels'
)
CLASSIFIER_OVERLAY = Topic(
    'classifier/overlay', IMAGE, 'output_image', 'classifier', 'frame with the top-3 classes'
)
CLASSIFIER_DETECTIONS = Topic(
    'classifier/detections',
    'cnn_perception_msgs/msg/DetectionArray',
    'result',
    'classifier',
    'with localize: true, a box per recognised object and track id (empty when none)',
)
DETECTIONS = Topic(
    'defects/detections',
    'cnn_perception_msgs/msg/DetectionArray',
    'result',
    'defects',
    'defect boxes per frame (empty when clean)',
)
DEFECT_EVENTS = Topic(
    'defects/events',
    'cnn_perception_msgs/msg/DefectEvent',
    'result',
    'defects',
    'once per confirmed defect and at its end: crop, position',
)
HEATMAP = Topic('defects/heatmap', IMAGE, 'output_image', 'defects', 'anomaly heatmap, boxes')
MOSAIC = Topic('feature_maps/mosaic', IMAGE, 'output_image', 'features', 'feature maps by layer')
CAM = Topic('feature_maps/cam', IMAGE, 'output_image', 'features', 'class activation map')
ANNOTATION_TYPE = 'foxglove_msgs/msg/ImageAnnotations'
CLASSIFIER_ANNOTATIONS = Topic(
    'classifier/annotations',
    ANNOTATION_TYPE,
    'result',
    'classifier',
    'labels for Foxglove (in bags; live where foxglove_msgs is installed)',
)
CLASSIFIER_BOX_ANNOTATIONS = Topic(
    'classifier/box_annotations',
    ANNOTATION_TYPE,
    'result',
    'classifier',
    'object boxes + labels for Foxglove (with localize: true)',
)
DEFECT_ANNOTATIONS = Topic(
    'defects/annotations',
    ANNOTATION_TYPE,
    'result',
    'defects',
    'boxes + track ids for Foxglove (in bags; live where foxglove_msgs is installed)',
)
DIAGNOSTICS = Topic(
    '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray', 'result', '*', 'health, counters'
)

TOPICS = (
    CAMERA_IMAGE,
    CAMERA_IMAGE_COMPRESSED,
    CAMERA_INFO,
    CLASSIFICATION,
    LABELS,
    CLASSIFIER_OVERLAY,
    CLASSIFIER_DETECTIONS,
    DETECTIONS,
    DEFECT_EVENTS,
    HEATMAP,
    MOSAIC,
    CAM,
    CLASSIFIER_ANNOTATIONS,
    CLASSIFIER_BOX_ANNOTATIONS,
    DEFECT_ANNOTATIONS,
    DIAGNOSTICS,
)
# Overlay images also get a JPEG twin `<topic>/compressed` (output_image QoS) while watched.
OUTPUT_IMAGES = (CLASSIFIER_OVERLAY, HEATMAP, MOSAIC, CAM)
# What the processing nodes subscribe to, remapped to the camera's topic by default.
IMAGE_INPUT = 'image'


def message_class(msgtype: str):
    """Rclpy class for 'pkg/msg/Name' (rosidl_runtime_py is not always installed)."""
    import importlib

    from cnn_perception.errors import BagError

    pkg, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f'message type {msgtype} is not available in this environment') from exc


def stamp_ns(header) -> int:
    """Nanoseconds of a std_msgs/Header stamp (rclpy or rosbags message alike)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def compressed_topic(topic: str) -> str:
    return topic.rstrip('/') + COMPRESSED_SUFFIX


def split_compressed(topic: str) -> tuple[str, bool]:
    """('/a/image', True) for '/a/image/compressed'; the topic itself otherwise."""
    if topic.endswith(COMPRESSED_SUFFIX):
        return topic[: -len(COMPRESSED_SUFFIX)], True
    return topic, False


QOS_WORDS = {
    'image_in': 'sensor data (best effort, keep last 1)',
    'result': 'reliable, depth 10',
    'output_image': 'reliable, depth 1',
    'latched': 'reliable, transient local',
}
