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
DEFAULT_PLATFORM = 'desktop'
# Platforms whose node processes hand freed heap pages back every second
# (runtime.keep_heap_small): memory over speed, for the Pi's 450 MB budget.
TRIM_HEAP = ('pi',)
DEFAULT_NAMESPACE = NAMESPACE
IMAGE_TOPIC = CAMERA_IMAGE.name


@dataclass(frozen=True)
class NodeSpec:
    """A node, declared once.

    Everything else is derived from it: setup.py's console scripts, the launch files, the
    pipeline, `bag process`'s flags, the demo's and the docs' names.
    """

    key: str  # what --nodes, enable_<key> and `bag process --node` call it
    name: str  # ROS node name, and its section in config/*.yaml
    executable: str  # console script (ros2 run cnn_perception <executable>)
    module: str  # python module holding the Node class and its `main`
    cls: str  # Node class name
    title: str  # what a person calls it ('defect detector')
    step: str = ''  # 'module:Class' of its rclpy-free step (steps.Step); '' for the camera
    offline: bool = False  # `bag process` and the demo can run its step on recorded frames
    offline_arg: str = ''  # the parameter `bag process --<key> VALUE` sets ('' : a switch)
    remappings: dict[str, str] = field(default_factory=dict)

    def available(self) -> bool:
        """Whether this node is implemented in this build (not faked when it is not)."""
        return importlib.util.find_spec(self.module) is not None

    @property
    def console_script(self) -> str:
        return f'{self.executable} = {self.module}:main'


_FRAME_INPUT = {IMAGE_INPUT: IMAGE_TOPIC}
NODES: dict[str, NodeSpec] = {
    s.key: s
    for s in (
        NodeSpec('camera', 'camera', 'camera_node', 'cnn_perception.nodes.camera_node',
                 'CameraNode', 'camera'),
        NodeSpec('classifier', 'classifier', 'classifier_node',
                 'cnn_perception.nodes.classifier_node', 'ClassifierNode', 'image classifier',
                 'cnn_perception.steps.classify:ClassifierStep', True, 'model', _FRAME_INPUT),
        NodeSpec('defects', 'defect_detector', 'defect_detector_node',
                 'cnn_perception.nodes.defect_detector_node', 'DefectDetectorNode',
                 'defect detector', 'cnn_perception.steps.defects:DefectStep', True, 'model',
                 _FRAME_INPUT),
        NodeSpec('features', 'feature_map', 'feature_map_node',
                 'cnn_perception.nodes.feature_map_node', 'FeatureMapNode',
                 'feature-map publisher', 'cnn_perception.steps.features:FeatureStep', True, '',
                 _FRAME_INPUT),
    )
}  # fmt: skip
PLUGIN_GROUP = 'cnn_perception.nodes'  # entry points naming a NodeSpec: nodes of other packages
_plugins_loaded = False


def register_node(spec: NodeSpec) -> NodeSpec:
    """Add a node (a package's own, or a plugin's); a key or name already taken is refused."""
    taken = [s.key for s in NODES.values() if spec.key == s.key or spec.name == s.name]
    if taken:
        raise ValueError(f'node {spec.key!r} ({spec.name}): {taken[0]!r} is registered already')
    NODES[spec.key] = spec
    return spec


def load_plugins() -> dict[str, NodeSpec]:
    """Register the NodeSpecs other packages declare (entry point group `cnn_perception.nodes`).

    Once per process; a plugin that fails to load is named on stderr and left out.
    """
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        from importlib.metadata import entry_points
        import sys

        for ep in entry_points(group=PLUGIN_GROUP):
            try:
                spec = ep.load()
                if spec.key not in NODES or NODES[spec.key] is not spec:
                    register_node(spec)
            except Exception as exc:  # another package's bug must not stop ours
                print(f'cnn_perception: node plugin {ep.name} not loaded: {exc}', file=sys.stderr)
    return NODES


def frame_nodes() -> list[NodeSpec]:
    """Nodes that run a step on camera frames (all but the camera), plugins included."""
    return [s for s in load_plugins().values() if s.step]


def topics_markdown() -> str:
    """Return the README's topic table, made from `contract.TOPICS` (a test keeps them equal)."""
    from cnn_perception.contract import OUTPUT_IMAGES, QOS_WORDS, TOPICS, compressed_topic

    exe = {key: spec.executable for key, spec in NODES.items()} | {'*': 'every node'}
    rows = [
        '| topic | type | QoS | published by | what |',
        '|---|---|---|---|---|',
    ]
    for t in TOPICS:
        rows.append(
            f'| `{t.name}` | {t.type.replace("/msg/", "/")} | {QOS_WORDS[t.qos]} | '
            f'{exe[t.node]} | {t.what} |'
        )
    for t in OUTPUT_IMAGES:
        rows.append(
            f'| `{compressed_topic(t.name)}` | sensor_msgs/CompressedImage | '
            f'{QOS_WORDS["output_image"]} | {exe[t.node]} | JPEG twin, while '
            'subscribed |'
        )
    return '\n'.join(rows)


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
    unknown = [k for k in keys if k not in load_plugins()]
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
    platform: str = DEFAULT_PLATFORM,
    nodes: list[str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    source: str | None = None,
    params: Path | None = None,
    image_topic: str | None = None,
    localize: bool = False,
    lifecycle: bool = False,
    autostart: bool = True,
) -> list[NodeEntry]:
    """List the nodes to start, each with its namespace, parameters file and remappings.

    `source` overrides the camera's `source` parameter; `image_topic` makes the
    processing nodes listen to another topic (a bag being replayed, camera off); a topic
    ending in `/compressed` is a CompressedImage stream: the nodes subscribe to it with
    `image_transport: compressed`, as image_transport's compressed subscriber would.
    `localize` turns the classifier's boxes on whatever the parameters file says;
    `lifecycle` makes managed nodes (`nodes/managed.py`), brought to active at start-up
    unless `autostart` is false.
    """
    pfile = Path(params) if params else params_file(platform)
    keys = nodes if nodes is not None else list(load_plugins())
    out = []
    for key in keys:
        spec = NODES[key]
        overrides = {'source': source} if key == 'camera' and source else {}
        if key == 'classifier' and localize:
            overrides['localize'] = True
        if lifecycle:
            overrides.update(lifecycle=True, autostart=autostart)
        remap = dict(spec.remappings)
        if image_topic and IMAGE_INPUT in remap:
            base, compressed = split_compressed(image_topic)
            remap[IMAGE_INPUT] = base
            if compressed:
                overrides['image_transport'] = 'compressed'
        out.append(NodeEntry(spec, namespace, pfile, overrides, remap))
    return out
