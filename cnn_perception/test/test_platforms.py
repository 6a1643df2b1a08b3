"""The per-platform node graph (pure Python) and the configuration files."""

import importlib
from pathlib import Path

import pytest
import yaml

from cnn_perception import platforms

PKG = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('platform', platforms.PLATFORMS)
def test_every_platform_has_parameters_for_every_node(platform):
    doc = yaml.safe_load(platforms.params_file(platform).read_text())
    names = {key.rsplit('/', 1)[1] for key in doc}
    assert names == {spec.name for spec in platforms.NODES.values()}
    for key, section in doc.items():
        assert key.startswith('/**/') and 'ros__parameters' in section


def test_platform_choices_follow_the_hardware():
    jetson = yaml.safe_load(platforms.params_file('jetson').read_text())
    pi = yaml.safe_load(platforms.params_file('pi').read_text())
    jc, pc = jetson['/**/classifier']['ros__parameters'], pi['/**/classifier']['ros__parameters']
    assert (jc['backend'], jc['device'], jc['fp16']) == ('torch', 'cuda', True)
    assert 'nvarguscamerasrc' in jetson['/**/camera']['ros__parameters']['source']
    assert (pc['backend'], pc['device']) == ('onnxruntime', 'cpu') and pc['num_threads'] <= 2
    assert 'libcamerasrc' in pi['/**/camera']['ros__parameters']['source']
    assert (
        pi['/**/feature_map']['ros__parameters']['max_rate_hz']
        < jetson['/**/feature_map']['ros__parameters']['max_rate_hz']
    )


def test_node_entries_wire_the_graph():
    entries = platforms.node_entries('pi', ['camera', 'classifier'], '/drone1', 'test:')
    cam, clf = entries
    assert cam.spec.executable == 'camera_node' and cam.overrides == {'source': 'test:'}
    assert clf.remappings == {'image': 'camera/image_raw'} and clf.namespace == '/drone1'
    assert clf.params_file.name == 'pi.yaml'
    replay = platforms.node_entries(nodes=['classifier'], image_topic='/replay/image')
    assert replay[0].remappings == {'image': '/replay/image'}
    with pytest.raises(ValueError, match='unknown node'):
        platforms.parse_nodes('camera,lidar')


def test_console_scripts_are_made_from_the_node_table(tmp_path):
    """setup.py derives them from platforms.NODES: what setuptools writes says so."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, 'setup.py', '-q', 'egg_info', '-e', str(tmp_path)],
        cwd=PKG, check=True, capture_output=True,
    )  # fmt: skip
    (info,) = tmp_path.glob('*.egg-info')
    scripts = (info / 'entry_points.txt').read_text()
    for spec in platforms.NODES.values():
        assert spec.console_script in scripts, scripts
        module = importlib.import_module(spec.module)
        assert callable(module.main) and hasattr(module, spec.cls), spec


def test_rviz_config_shows_every_image_topic():
    doc = yaml.safe_load((PKG / 'config' / 'cnn_perception.rviz').read_text())
    topics = {
        d['Topic']['Value']
        for d in doc['Visualization Manager']['Displays']
        if d['Class'] == 'rviz_default_plugins/Image'
    }
    assert topics == {
        '/cnn_perception/camera/image_raw',
        '/cnn_perception/classifier/overlay',
        '/cnn_perception/defects/heatmap',
        '/cnn_perception/feature_maps/mosaic',
        '/cnn_perception/feature_maps/cam',
    }


def test_every_rviz_topic_is_advertised_with_the_type_rviz_expects(probe):
    from conftest import run_cli, stop_process

    doc = yaml.safe_load((PKG / 'config' / 'cnn_perception.rviz').read_text())
    expected = {
        d['Topic']['Value']: 'sensor_msgs/msg/Image'
        for d in doc['Visualization Manager']['Displays']
        if d['Class'] == 'rviz_default_plugins/Image'
    }
    proc = run_cli('run', '--source', 'test:', '--duration', '120')

    def advertised():
        return dict(probe.node.get_topic_names_and_types())

    try:
        ok = probe.spin_until(lambda: all(t in advertised() for t in expected), 90)
        topics = advertised()
    finally:
        log = stop_process(proc)
    assert ok, (sorted(set(expected) - set(topics)), log[-2000:])
    for topic, msg_type in expected.items():
        assert topics[topic] == [msg_type], topic


def test_localize_reaches_the_classifier_over_its_parameters_file():
    """`run --localize` / launch `localize:=true`: a node override, which beats the YAML."""
    from cnn_perception import platforms

    entries = {e.spec.key: e for e in platforms.node_entries('desktop', localize=True)}
    assert entries['classifier'].overrides == {'localize': True}
    assert 'localize' not in entries['defects'].overrides
    plain = {e.spec.key: e for e in platforms.node_entries('desktop')}
    assert 'localize' not in plain['classifier'].overrides
