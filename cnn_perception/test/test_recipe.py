"""docs/ARCHITECTURE.md's "Add a node", followed from outside the package.

A tiny step written from the recipe alone (a brightness meter: mean brightness -> 'bright'
or 'dark'), declared as another package would (an entry point in the group
`cnn_perception.nodes`), runs live in the pipeline next to the camera over real DDS and
offline in `bag process`, with nothing in this package changed.
"""

import os
from pathlib import Path

from cnn_perception_msgs.msg import Classification
from conftest import cli_run, run_cli, stop_process
import field_bags as fb
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

TOPIC = '/cnn_perception/brightness/classification'
PLUGIN = """
from cnn_perception_msgs.msg import Classification, ObjectHypothesis

from cnn_perception.contract import IMAGE_INPUT, Topic
from cnn_perception.params import Param
from cnn_perception.platforms import IMAGE_TOPIC, NodeSpec
from cnn_perception.steps import Step, StepOutput

OUT = Topic('brightness/classification', 'cnn_perception_msgs/msg/Classification', 'result',
            'brightness', 'bright or dark')
SPEC = NodeSpec('brightness', 'brightness', 'brightness_node',
                'cnn_perception.nodes.frame_node', 'FrameNode', 'brightness meter',
                step='brightness_plugin:BrightnessStep', offline=True,
                remappings={IMAGE_INPUT: IMAGE_TOPIC})


class BrightnessStep(Step):
    key = 'brightness'
    PARAMS = [Param('threshold', 0.5, 'mean brightness (0..1) above which a frame is bright',
                    0.0, 1.0, live=True)]
    outputs = (OUT,)

    def __call__(self, rgb, header, want=frozenset()):
        mean = float(rgb.mean()) / 255.0
        label = 'bright' if mean > self.p['threshold'] else 'dark'
        msg = Classification(header=header, model='brightness',
                             results=[ObjectHypothesis(class_id=int(label == 'bright'),
                                                       label=label, score=mean)])
        return StepOutput([(OUT, msg)], values={'mean': round(mean, 3)})
"""


def install_plugin(root: Path) -> Path:
    """Write the plugin module and its dist-info (what `pip install` of it would leave)."""
    (root / 'brightness_plugin.py').write_text(PLUGIN)
    info = root / 'brightness_plugin-0.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: brightness-plugin\nVersion: 0.1\n'
    )
    (info / 'entry_points.txt').write_text(
        '[cnn_perception.nodes]\nbrightness = brightness_plugin:SPEC\n'
    )
    return root


def with_plugin(monkeypatch, tmp_path) -> None:
    root = install_plugin(tmp_path / 'site')
    monkeypatch.setenv('PYTHONPATH', f'{root}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')


def test_a_node_from_the_recipe_runs_live_in_the_pipeline(monkeypatch, tmp_path, probe):
    (tmp_path / 'site').mkdir()
    with_plugin(monkeypatch, tmp_path)
    got = probe.listen(Classification, TOPIC)
    pipe = run_cli('run', '--nodes', 'camera,brightness', '--source', 'test:', '--duration', '90')
    try:
        assert probe.spin_until(lambda: len(got) >= 3, 60), ''.join(pipe.lines)
    finally:
        log = stop_process(pipe)
    assert 'Traceback' not in log and 'node plugin' not in log, log
    assert all(m.results[0].label in ('bright', 'dark') for _, m in got)
    assert all(m.header.frame_id for _, m in got)  # the camera's header, copied


def test_a_node_from_the_recipe_runs_in_bag_process(monkeypatch, tmp_path):
    (tmp_path / 'site').mkdir()
    with_plugin(monkeypatch, tmp_path)
    bag = fb.compressed_bag(tmp_path / 'in', n=4)
    r = cli_run('bag', 'process', bag, tmp_path / 'out', '--brightness')
    assert r.returncode == 0, r.stdout + r.stderr
    with Reader(tmp_path / 'out') as reader:
        conns = [c for c in reader.connections if c.topic == TOPIC]
        msgs = [
            deserialize_message(bytes(raw), Classification) for _, _, raw in reader.messages(conns)
        ]
    assert [fb.stamp(i) for i in range(4)] == [
        m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs
    ]
    assert {m.results[0].label for m in msgs} <= {'bright', 'dark'}
    # and without the plugin the flag does not exist: nothing of it is in this package
    monkeypatch.undo()
    r = cli_run('bag', 'process', bag, tmp_path / 'out2', '--brightness')
    assert r.returncode != 0 and 'unrecognized arguments: --brightness' in r.stderr
