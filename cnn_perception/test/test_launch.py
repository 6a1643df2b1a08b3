"""The launch files for real, where `launch` and `launch_ros` are installed.

That is a robot, or a machine that built them from source; elsewhere these tests are
skipped: neither can be pip-installed.
"""

from pathlib import Path

import pytest

launch = pytest.importorskip(
    'launch',
    reason='launch is not installable without a ROS install; the node graph the '
    'launch files use is tested in test_platforms.py',
)
launch_ros = pytest.importorskip(
    'launch_ros', reason='launch_ros is not installable without a ROS install'
)

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

SHARE = Path(get_package_share_directory('cnn_perception'))


def load(name: str):
    return PythonLaunchDescriptionSource(str(SHARE / 'launch' / name)).get_launch_description(
        launch.LaunchContext()
    )


def test_every_argument_has_a_description():
    desc = load('perception.launch.py')
    args = {a.name: a for a in desc.get_launch_arguments()}
    assert {
        'platform',
        'source',
        'namespace',
        'params_file',
        'log_level',
        'use_sim_time',
        'enable_camera',
        'enable_classifier',
        'enable_defects',
        'enable_features',
        'single_process',
        'lifecycle',
        'autostart',
    } <= set(args)
    for a in args.values():
        assert a.description and 'no description' not in a.description.lower(), a.name


@pytest.mark.parametrize('name', ['jetson.launch.py', 'pi.launch.py'])
def test_platform_files_include_the_shared_one(name):
    desc = load(name)
    includes = [e for e in desc.entities if isinstance(e, launch.actions.IncludeLaunchDescription)]
    assert len(includes) == 1


LAUNCH_SCRIPT = """
import sys
import launch
from launch.launch_description_sources import PythonLaunchDescriptionSource
ls = launch.LaunchService()
args = {'source': 'test:', 'enable_defects': 'false', 'enable_features': 'false'}
args.update(a.split(':=') for a in sys.argv[2:])
ls.include_launch_description(launch.actions.IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args.items()))
sys.exit(ls.run())
"""


def test_launch_starts_the_nodes(probe):
    from cnn_perception_msgs.msg import Classification
    from conftest import python_process, stop_process

    proc = python_process('-c', LAUNCH_SCRIPT, str(SHARE / 'launch' / 'perception.launch.py'))
    try:
        got = probe.listen(Classification, '/cnn_perception/classifier/classification')
        assert probe.spin_until(lambda: len(got) >= 3, 90), ''.join(proc.lines)[-3000:]
        want = {('camera', '/cnn_perception'), ('classifier', '/cnn_perception')}
        # Results can arrive before graph discovery has seen every node.
        assert probe.spin_until(
            lambda: want <= set(probe.node.get_node_names_and_namespaces()), 30
        ), probe.node.get_node_names_and_namespaces()
        names = probe.node.get_node_names_and_namespaces()
        assert ('defect_detector', '/cnn_perception') not in names
        topics = dict(probe.node.get_topic_names_and_types())
        assert topics['/cnn_perception/camera/image_raw'] == ['sensor_msgs/msg/Image']
    finally:
        log = stop_process(proc, timeout=20)
    assert 'Traceback' not in log, log


def test_single_process_runs_the_nodes_in_one_pipeline_process(probe):
    """single_process:=true (the Pi's default): one `pipeline` process, frames in-process."""
    from cnn_perception_msgs.msg import Classification
    from conftest import diag_value, python_process, stop_process
    from diagnostic_msgs.msg import DiagnosticArray

    proc = python_process(
        '-c', LAUNCH_SCRIPT, str(SHARE / 'launch' / 'perception.launch.py'), 'single_process:=true'
    )
    try:
        got = probe.listen(Classification, '/cnn_perception/classifier/classification')
        diags = probe.listen(DiagnosticArray, '/diagnostics')

        def in_process_only():
            return int(diag_value(diags, 'camera', 'frames_in_process_only') or 0) > 0

        assert probe.spin_until(lambda: len(got) >= 3 and in_process_only(), 90), ''.join(
            proc.lines
        )[-3000:]
        want = {('camera', '/cnn_perception'), ('classifier', '/cnn_perception')}
        # Results can arrive before graph discovery has seen every node.
        assert probe.spin_until(
            lambda: want <= set(probe.node.get_node_names_and_namespaces()), 30
        ), probe.node.get_node_names_and_namespaces()
    finally:
        log = stop_process(proc, timeout=20)
    assert 'Traceback' not in log, log
    assert log.count('pipeline: running') == 1, log[-3000:]


def test_pi_launch_defaults_to_one_process():
    desc = load('pi.launch.py')
    args = {a.name: a for a in desc.get_launch_arguments()}
    assert args['single_process'].default_value[0].text == 'true'


@pytest.mark.parametrize('single_process', ['false', 'true'])
def test_managed_nodes_wait_unconfigured_and_a_client_brings_them_up(probe, single_process):
    """lifecycle:=true autostart:=false: nothing runs until configure and activate."""
    from cnn_perception_msgs.msg import Classification
    from conftest import python_process, stop_process

    from cnn_perception.tools.lifecycle import LifecycleClient

    proc = python_process(
        '-c', LAUNCH_SCRIPT, str(SHARE / 'launch' / 'perception.launch.py'),
        'lifecycle:=true', 'autostart:=false', f'single_process:={single_process}',
    )  # fmt: skip
    try:
        got = probe.listen(Classification, '/cnn_perception/classifier/classification')
        nodes = {}
        for key in ('classifier', 'camera'):
            nodes[key] = LifecycleClient(probe.node, f'/cnn_perception/{key}', probe.spin_until)
            nodes[key].wait(120)
            assert nodes[key].state() == 'unconfigured'
        probe.spin_for(2.0)
        assert not got
        for transition in ('configure', 'activate'):
            for key in ('classifier', 'camera'):
                assert nodes[key].change(transition), (key, transition)
        assert probe.spin_until(lambda: len(got) >= 3, 60), ''.join(proc.lines)[-3000:]
    finally:
        log = stop_process(proc, timeout=20)
    assert 'Traceback' not in log, log
