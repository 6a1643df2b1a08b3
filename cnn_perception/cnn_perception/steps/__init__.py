"""One rclpy-free step per processing node: (frame, header, settings) -> result messages.

The live node and offline processing (`bag process`, the demo) call the same step with
the same parameters (the node's / the platform YAML via `params.params_from_file`), so
live and offline results are the same by construction. A step returns `StepOutput`: the
result messages (header copied from the frame) and the output images that were asked for
(`want`: the output-image topics someone watches; offline: all of them).
"""

from dataclasses import dataclass, field
import importlib
from typing import Any

import numpy as np

from cnn_perception.contract import Topic
from cnn_perception.params import Param


@dataclass
class StepOutput:
    messages: list[tuple[Topic, Any]] = field(default_factory=list)
    images: list[tuple[Topic, np.ndarray]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # for /diagnostics


# Parameters every frame-processing node has, whatever its step.
FRAME_PARAMS = [
    Param(
        'image_transport',
        'raw',
        'How frames arrive: raw (sensor_msgs/Image on `image`) or compressed '
        '(sensor_msgs/CompressedImage on `image/compressed`, JPEG or PNG)',
        choices=('raw', 'compressed'),
    ),
    Param(
        'max_rate_hz',
        0.0,
        'Most frames processed per second (0: as fast as possible)',
        0.0,
        1000.0,
        live=True,
    ),
    Param(
        'image_max_rate_hz',
        15.0,
        'Most output images (overlays, heatmaps) published per second, for people watching '
        'in rviz; results are published for every processed frame (0: an image for every '
        'processed frame). Drawing and sending a 640x480 image costs about as much CPU as '
        'the camera spends on a frame',
        0.0,
        1000.0,
        live=True,
    ),
    Param(
        'niceness',
        0,
        'Linux nice value of the inference thread (0: normal priority; 19: lowest). A head '
        'that runs at a few hertz beside the classifier yields the CPU to it; pair with '
        'num_threads 1, as ONNX Runtime pool threads keep normal priority',
        0,
        19,
    ),
]


class Step:
    """What FrameNode and the offline driver rely on: a rclpy-free frame -> results step.

    A subclass names its node (`key`, a NodeSpec in `platforms.NODES` or a plugin's),
    declares its `PARAMS` (the frame parameters are added) and its `outputs` (contract
    Topics whose `node` is its key), and implements `__call__`; the rest has defaults.
    docs/ARCHITECTURE.md, "Add a node", is the recipe.
    """

    key = ''  # platforms.NODES key
    PARAMS: list[Param] = []
    outputs: tuple[Topic, ...] = ()
    needs_watchers = False  # True: computed only while someone looks (feature maps)
    leads_shared_pass = False  # True: hands its frames to the shared pass's followers
    shared_pass = None  # the process's shared backbone, when the step uses it

    def __init__(self, p: dict, log=print):
        self.p, self.log = p, log
        self.describe = self.key  # for diagnostics: what this step runs

    @classmethod
    def section(cls) -> str:
        """Return the node's name: its section in config/*.yaml."""
        from cnn_perception.platforms import load_plugins

        return load_plugins()[cls.key].name

    def set(self, name: str, value) -> None:
        """Take a parameter changed at run time (declared `live=True`)."""
        self.p[name] = value

    def __call__(self, rgb: np.ndarray, header, want=frozenset()) -> StepOutput:
        raise NotImplementedError

    def finish(self, header) -> StepOutput:
        """Close what spans frames (open defect tracks) at the end of a stream."""
        return StepOutput()

    def reset(self) -> None:
        """Forget what spans frames (tracks, positions): the next frames are another flight."""

    def close(self) -> None:
        """Let go of the shared pass (a lifecycle cleanup): the last head frees its model."""
        if self.shared_pass is not None:
            self.shared_pass.release()
            self.shared_pass = None


def step_class(key: str) -> type[Step]:
    from cnn_perception.platforms import load_plugins

    module, cls = load_plugins()[key].step.split(':')
    return getattr(importlib.import_module(module), cls)


def node_params(step_cls) -> list[Param]:
    """Return the node's parameters: its step's, then the frame parameters it lacks."""
    own = {p.name for p in step_cls.PARAMS}
    return list(step_cls.PARAMS) + [p for p in FRAME_PARAMS if p.name not in own]
