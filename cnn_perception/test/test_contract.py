"""The topic contract in code: the README agrees with it, the nodes and offline tools use it."""

from pathlib import Path
import re

import pytest

from cnn_perception import contract, platforms
from cnn_perception.steps import step_class

README = Path(__file__).resolve().parents[2] / 'README.md'


def test_readme_topic_table_is_the_contract():
    text = README.read_text()
    m = re.search(r'<!-- topics -->\n(.*?)\n<!-- /topics -->', text, re.S)
    assert m, 'README lost its <!-- topics --> block'
    assert m.group(1).strip() == platforms.topics_markdown(), (
        'README topic table differs from cnn_perception/contract.py; regenerate it with '
        "python -c 'from cnn_perception.platforms import topics_markdown as t; print(t())'"
    )


def test_every_step_output_is_a_contract_topic_of_its_node():
    for spec in platforms.frame_nodes():
        cls = step_class(spec.key)
        assert cls.key == spec.key and cls.section() == spec.name
        for topic in cls.outputs:
            assert topic in contract.TOPICS
            assert topic.node == spec.key, (spec.key, topic)


def test_a_node_key_or_name_is_never_replaced_silently():
    spec = platforms.NODES['classifier']
    with pytest.raises(ValueError, match='registered already'):
        platforms.register_node(spec)


def test_full_names_and_compressed_twins():
    assert contract.CLASSIFICATION.full() == '/cnn_perception/classifier/classification'
    assert contract.CLASSIFICATION.full('/drone1/') == '/drone1/classifier/classification'
    assert contract.DIAGNOSTICS.full('/x') == '/diagnostics'
    assert contract.split_compressed('/a/image/compressed') == ('/a/image', True)
    assert contract.split_compressed('/a/image') == ('/a/image', False)
    assert contract.compressed_topic('/a/image') == '/a/image/compressed'


def test_compressed_image_topic_sets_the_transport():
    entries = platforms.node_entries(
        'desktop', ['camera', 'classifier'], image_topic='/drone/cam/image/compressed'
    )
    cam, clf = entries
    assert 'image_transport' not in cam.overrides
    assert clf.remappings['image'] == '/drone/cam/image'
    assert clf.overrides['image_transport'] == 'compressed'
    raw = platforms.node_entries('desktop', ['classifier'], image_topic='/drone/cam/image')[0]
    assert raw.remappings['image'] == '/drone/cam/image' and not raw.overrides
