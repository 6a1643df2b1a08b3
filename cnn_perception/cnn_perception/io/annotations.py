"""foxglove_msgs/msg/ImageAnnotations from results, so Foxglove draws them over the image.

Foxglove's Image panel overlays any ImageAnnotations topic whose stamps match the image's.
The definitions below are written from the fields documented on docs.foxglove.dev
("ImageAnnotations", "PointsAnnotation", "TextAnnotation", "CircleAnnotation", "Point2",
"Color"; ROS 2 names foxglove_msgs/msg/...): the bag writer registers them, so bags carry
the schema without a foxglove_msgs install. Live nodes publish them where a foxglove_msgs
package is importable (`apt install ros-$ROS_DISTRO-foxglove-msgs`).

One annotation channel per result kind: `classifier/annotations` (top-3 labels),
`classifier/box_annotations` (a green box per recognised object: track id, label, score)
and `defects/annotations` (a red box per defect, labelled with its track id and score).
"""

import importlib

from cnn_perception import contract

DEFINITIONS = {
    'foxglove_msgs/msg/Color': 'float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n',
    'foxglove_msgs/msg/Point2': 'float64 x\nfloat64 y\n',
    'foxglove_msgs/msg/CircleAnnotation': (
        'builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nfloat64 diameter\n'
        'float64 thickness\nfoxglove_msgs/Color fill_color\nfoxglove_msgs/Color outline_color\n'
    ),
    'foxglove_msgs/msg/PointsAnnotation': (
        'builtin_interfaces/Time timestamp\nuint8 UNKNOWN=0\nuint8 POINTS=1\nuint8 LINE_LOOP=2\n'
        'uint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nuint8 type\nfoxglove_msgs/Point2[] points\n'
        'foxglove_msgs/Color outline_color\nfoxglove_msgs/Color[] outline_colors\n'
        'foxglove_msgs/Color fill_color\nfloat64 thickness\n'
    ),
    'foxglove_msgs/msg/TextAnnotation': (
        'builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nstring text\n'
        'float64 font_size\nfoxglove_msgs/Color text_color\nfoxglove_msgs/Color background_color\n'
    ),
    'foxglove_msgs/msg/ImageAnnotations': (
        'foxglove_msgs/CircleAnnotation[] circles\nfoxglove_msgs/PointsAnnotation[] points\n'
        'foxglove_msgs/TextAnnotation[] texts\n'
    ),
}
LINE_LOOP = 2
# results topic (relative) -> its annotation topic (relative)
CHANNELS = {
    contract.CLASSIFICATION.name: contract.CLASSIFIER_ANNOTATIONS.name,
    contract.CLASSIFIER_DETECTIONS.name: contract.CLASSIFIER_BOX_ANNOTATIONS.name,
    contract.DETECTIONS.name: contract.DEFECT_ANNOTATIONS.name,
}


def annotation_topic(result_topic: str) -> str | None:
    """'/ns/defects/annotations' for '/ns/defects/detections'; None for other topics."""
    for result, ann in CHANNELS.items():
        if result_topic.endswith(result):
            return result_topic[: -len(result)] + ann
    return None


def register(store) -> None:
    """Add the foxglove_msgs definitions to a rosbags type store."""
    from rosbags.typesys import get_types_from_msg

    types = {}
    for name, text in DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)


def rclpy_types():
    """Return the installed foxglove_msgs.msg module, or None (annotations bag-only)."""
    try:
        return importlib.import_module('foxglove_msgs.msg')
    except ImportError:
        return None


class Builder:
    """Make ImageAnnotations with the classes of a rosbags store or of foxglove_msgs.msg."""

    def __init__(self, classes):
        """`classes`: name -> class (a rosbags store's `types`, or the rclpy module)."""
        if isinstance(classes, dict):
            self._cls = lambda name: classes[f'foxglove_msgs/msg/{name}']
            self._time = lambda s: classes['builtin_interfaces/msg/Time'](
                sec=s.sec, nanosec=s.nanosec
            )
        else:
            from builtin_interfaces.msg import Time

            self._cls = lambda name: getattr(classes, name)
            self._time = lambda s: Time(sec=s.sec, nanosec=s.nanosec)

    def color(self, r, g, b, a=1.0):
        return self._cls('Color')(r=float(r), g=float(g), b=float(b), a=float(a))

    def point(self, x, y):
        return self._cls('Point2')(x=float(x), y=float(y))

    def text(self, stamp, x, y, text, size=14.0, color=(1, 1, 1), background=(0, 0, 0, 0.6)):
        return self._cls('TextAnnotation')(
            timestamp=self._time(stamp),
            position=self.point(x, y),
            text=text,
            font_size=float(size),
            text_color=self.color(*color),
            background_color=self.color(*background),
        )

    def box(self, stamp, x, y, w, h, color):
        return self._cls('PointsAnnotation')(
            timestamp=self._time(stamp),
            type=LINE_LOOP,
            points=[
                self.point(x, y),
                self.point(x + w, y),
                self.point(x + w, y + h),
                self.point(x, y + h),
            ],  # fmt: skip
            outline_color=self.color(*color),
            outline_colors=[],
            fill_color=self.color(0, 0, 0, 0),
            thickness=2.0,
        )

    def annotations(self, points=(), texts=()):
        return self._cls('ImageAnnotations')(circles=[], points=list(points), texts=list(texts))

    def for_classification(self, msg):
        """Write the top-3 labels with their probabilities, top left of the image."""
        s = msg.header.stamp
        texts = [
            self.text(s, 8, 22 + 20 * i, f'{h.label} {h.score:.0%}', color=(0.3, 1, 0.3))
            for i, h in enumerate(msg.results[:3])
        ]
        return self.annotations(texts=texts)

    def for_detections(self, msg, objects: bool = False):
        """Draw a box per detection with its track id and score: red defects, green objects."""
        s = msg.header.stamp
        points, texts = [], []
        color = (0.1, 0.9, 0.2) if objects else (1, 0.1, 0.1)
        back = (0, 0.45, 0.1, 0.7) if objects else (0.8, 0, 0, 0.7)
        for d in msg.detections:
            b = d.bbox
            x, y = b.center_x - b.size_x / 2, b.center_y - b.size_y / 2
            points.append(self.box(s, x, y, b.size_x, b.size_y, color))
            name = f'{d.id} {d.hypothesis.label}' if objects else d.id or 'defect'
            label = f'{name.strip()} {d.hypothesis.score:.2f}'
            texts.append(self.text(s, x, max(12.0, y - 4), label, 12.0, (1, 1, 1), back))
        return self.annotations(points, texts)

    def for_result(self, topic: str, msg):
        """Build the annotations of a result message on `topic` (ending in a CHANNELS key)."""
        if topic.endswith('classification'):
            return self.for_classification(msg)
        objects = topic.endswith(contract.CLASSIFIER_DETECTIONS.name)
        return self.for_detections(msg, objects=objects)
