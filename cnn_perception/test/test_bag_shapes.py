"""Every camera bag a user brings: lone pieces, rosbag2 compression, early ROS 2, Bayer.

Each shape is written the way other tools write it (`bag_shapes`), then read by
`BagReader` and processed by `bag process` (the classifier's step) exactly as a rosbag2
directory is: one result per decodable frame, the frame's stamp on it, the same top-1 as
the same photographs in a plain bag.
"""

from pathlib import Path

import bag_shapes as bs
from conftest import cli_run
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

from cnn_perception import contract
from cnn_perception.contract import stamp_ns
from cnn_perception.errors import BagError
from cnn_perception.io.bags import BagReader

N = 5


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    d = tmp_path_factory.mktemp('shapes')
    zero = [bs.image_msg(rgb, i, zero_stamp=True) for i, rgb in enumerate(bs.frames(N))]
    made = {
        'plain': bs.write_bag(d / 'plain', bs.photo_msgs(N)),
        'lone_mcap': bs.lone(bs.write_bag(d / 'a', bs.photo_msgs(N)), d / 'cam.mcap'),
        'lone_db3': bs.lone(bs.write_bag(d / 'b', bs.photo_msgs(N), 'sqlite3'), d / 'cam.db3'),
        'mcap_no_definitions': bs.mcap_without_definitions(d / 'nodefs.mcap', bs.photo_msgs(N)),
        'message_compressed': bs.write_bag(d / 'msg', bs.photo_msgs(N), compression='message'),
        'message_compressed_lone': bs.lone(
            bs.write_bag(d / 'c', bs.photo_msgs(N), compression='message'), d / 'msgz.mcap'
        ),
        'file_compressed': bs.write_bag(d / 'file', bs.photo_msgs(N), compression='file'),
        'file_compressed_lone': bs.lone(
            bs.write_bag(d / 'e', bs.photo_msgs(N), compression='file'), d / 'f.mcap.zstd'
        ),
        'early_db3': bs.early_db3(d / 'early.db3', zero),
    }
    return d, made


def classifications(bag: Path) -> list:
    topic = contract.CLASSIFICATION.full()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [
            deserialize_message(bytes(raw), contract.message_class(contract.CLASSIFICATION.type))
            for _, _, raw in reader.messages(conns)
        ]


@pytest.fixture(scope='module')
def processed(shapes):
    from cnn_perception.bagtools import process

    d, made = shapes
    out = {}
    for key, bag in made.items():
        report = process(bag, d / f'{key}_out', {'classifier': True}, log=lambda _: None)
        out[key] = (report, classifications(d / f'{key}_out'))
    return out


SHAPES = [
    'lone_mcap',
    'lone_db3',
    'mcap_no_definitions',
    'message_compressed',
    'message_compressed_lone',
    'file_compressed',
    'file_compressed_lone',
    'early_db3',
]


@pytest.mark.parametrize('key', SHAPES)
def test_each_shape_gives_one_result_per_frame_as_a_plain_bag_does(processed, key):
    report, results = processed[key]
    _, plain = processed['plain']
    assert report.frames == N and not report.skipped and not report.failed, report
    assert [stamp_ns(m.header) for m in results] == [bs.stamp(i) for i in range(N)]
    assert [m.results[0].label for m in results] == [m.results[0].label for m in plain]


def test_early_db3_types_and_missing_stamps_are_named(processed):
    report, _ = processed['early_db3']
    notes = ' | '.join(report.quirks)
    assert 'sensor_msgs/Image' in notes and 'no metadata.yaml' in notes, notes
    assert f'{N} frame(s) had header stamp 0' in notes, notes


def test_message_compression_without_metadata_is_found_in_the_payload(shapes):
    _, made = shapes
    with BagReader(made['message_compressed_lone']) as r:
        assert r.compression == 'zstd (message)'
        assert any('found in the payload' in q for q in r.quirks)
    with BagReader(made['file_compressed_lone']) as r:
        assert r.compression == 'zstd (file)'


@pytest.mark.parametrize('with_metadata', [False, True])
def test_split_recording_with_a_missing_piece_names_it_and_reads_the_rest(tmp_path, with_metadata):
    folder = bs.split_recording(tmp_path / 'rec', 3, 3, drop=None)
    if with_metadata:  # metadata.yaml of the whole recording, as ros2 bag record left it
        import yaml

        whole = bs.write_bag(tmp_path / 'whole', bs.photo_msgs(9))
        meta = yaml.safe_load((whole / 'metadata.yaml').read_text())
        info = meta['rosbag2_bagfile_information']
        info['relative_file_paths'] = [f'rec_{k}.mcap' for k in range(3)]
        (folder / 'metadata.yaml').write_text(yaml.safe_dump(meta))
    (folder / 'rec_1.mcap').unlink()
    with BagReader(folder) as r:
        assert r.layout.missing == ['rec_1.mcap']
        assert any('rec_1.mcap' in q for q in r.quirks)
        got = [s for _, s, _ in r.messages(r.image_connections())]
    assert got == [bs.stamp(i) for i in (0, 1, 2, 6, 7, 8)]


@pytest.mark.parametrize('bits', [8, 16])
def test_bayer_frames_of_each_pattern_demosaic_to_their_colour(tmp_path, bits):
    bag = bs.bayer_bag(tmp_path / 'bayer', bits)
    bad = []
    with BagReader(bag) as r:
        got = [(m.encoding, rgb) for _, _, _, m, rgb in r.frames(r.image_connections(), bad)]
    assert not bad and len(got) == 4
    for encoding, rgb in got:
        assert rgb.shape == (48, 64, 3), encoding
        # a flat field demosaics exactly; the one-pixel border too, as OpenCV pads it
        err = np.abs(rgb.astype(int) - np.array(bs.COLOUR)).max()
        assert err <= 1, (encoding, rgb[24, 32])


def test_bayer_bag_through_bag_process(tmp_path):
    from cnn_perception.bagtools import process

    report = process(bs.bayer_bag(tmp_path / 'b'), tmp_path / 'o', {'classifier': True}, log=print)
    assert report.frames == 4 and not report.skipped


def test_bag_info_says_what_it_found(shapes):
    _, made = shapes
    r = cli_run('bag', 'info', made['early_db3'])
    assert r.returncode == 0, r.stderr
    for text in (
        'Format:            storage piece(s) without metadata.yaml',
        'Storage id:        sqlite3',
        f'Topic: {bs.TOPIC} | Type: sensor_msgs/msg/Image | Count: {N} | Encoding: rgb8',
        'sensor_msgs/Image',
        'header stamp 0',
    ):
        assert text in r.stdout, (text, r.stdout)
    r = cli_run('bag', 'info', made['message_compressed_lone'], '--json')
    assert r.returncode == 0 and '"compression": "zstd (message)"' in r.stdout, r.stdout


@pytest.mark.parametrize(
    ('name', 'says'),
    [
        ('cam.mcap.lz4', 'compressed with lz4'),
        ('notes.txt', 'not a bag'),
        ('empty_dir', 'no metadata.yaml and no .mcap / .db3 piece'),
    ],
)
def test_what_is_no_bag_says_so_in_one_line(tmp_path, name, says):
    path = tmp_path / name
    if name == 'empty_dir':
        path.mkdir()
    else:
        path.write_bytes(b'\x04"M\x18 not a bag')
    with pytest.raises(BagError, match=says):
        BagReader(path)
    r = cli_run('bag', 'process', path, tmp_path / 'o', '--classifier')
    assert r.returncode != 0 and 'Traceback' not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr


def test_camera_replays_a_lone_bayer_mcap_into_the_classifier(tmp_path, probe):
    """Live: a lone MCAP of Bayer frames through the camera's bag: source over DDS."""
    from cnn_perception_msgs.msg import Classification
    from conftest import run_cli, stop_process

    bag = bs.lone(bs.write_bag(tmp_path / 'b', bs.photo_bayer_msgs(6)), tmp_path / 'bayer.mcap')
    got = probe.listen(Classification, contract.CLASSIFICATION.full())
    pipe = run_cli(
        'run', '--nodes', 'camera,classifier', '--source', f'bag:{bag}', '--duration', '120'
    )
    try:
        assert probe.spin_until(lambda: len(got) >= 6, 90), ''.join(pipe.lines)
    finally:
        log = stop_process(pipe)
    assert 'Traceback' not in log and 'bad bag message' not in log, log
    labels = {m.results[0].label for _, m in got}
    assert labels & {'tiger cat', 'tabby', 'Egyptian cat'} and labels & {'espresso', 'cup'}, labels
