"""Camera sources without ROS: parsing, the test scene, folders, videos, bags."""

import cv2
import numpy as np
import pytest

from cnn_perception.errors import SourceError
from cnn_perception.io.sources import (
    SourceEnded,
    SourceLost,
    SourceSpec,
    TestScene,
    check_openable,
    open_source,
    parse_source,
)


def test_parse_every_accepted_form():
    assert parse_source('0') == SourceSpec('v4l2', '0')
    assert parse_source('v4l2:/dev/video2') == SourceSpec('v4l2', '/dev/video2')
    assert parse_source('gst:videotestsrc ! appsink').kind == 'gst'
    assert parse_source('file:/tmp/a.mp4') == SourceSpec('file', '/tmp/a.mp4')
    assert parse_source('dir:/tmp/frames') == SourceSpec('dir', '/tmp/frames')
    assert parse_source('bag:/tmp/my bag:/camera/image_raw') == SourceSpec(
        'bag', '/tmp/my bag', '/camera/image_raw'
    )
    assert parse_source('test:').kind == 'test'
    # issue 14: a bag without a topic uses its only image topic; topics need no slash
    assert parse_source('bag:/tmp/b') == SourceSpec('bag', '/tmp/b', '')
    assert parse_source('bag:/tmp/b:cam/image') == SourceSpec('bag', '/tmp/b', 'cam/image')
    assert parse_source('picamera2:1') == SourceSpec('picamera2', '1')


@pytest.mark.parametrize('text', ['webcam', 'http://x', 'file:', 'bag:', 'picamera2:x', ''])
def test_unparseable_sources_name_the_accepted_forms(text):
    with pytest.raises(SourceError, match='accepted|use bag:') as err:
        parse_source(text)
    assert repr(text) in str(err.value) or 'bag:' in str(err.value)


def test_missing_files_are_an_error_at_start(tmp_path):
    for text in (
        f'file:{tmp_path}/none.avi',
        f'dir:{tmp_path}/none',
        f'dir:{tmp_path}',
        f'bag:{tmp_path}:/camera/image_raw',
    ):
        with pytest.raises(SourceError):
            check_openable(parse_source(text))
    check_openable(parse_source('v4l2:/dev/video99'))  # a device may appear later


def test_test_scene_pans_over_real_photographs():
    scene = TestScene(320, 240)
    a, b = scene.read(), scene.read()
    assert a.shape == b.shape == (240, 320, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)  # it moves
    assert np.array_equal(a[:, 8:], b[:, :-8])  # by 8 px per frame
    assert a.std() > 20  # a photograph, not a flat colour


def write_frames(folder, n=3, size=(64, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((size[1], size[0], 3), 40 * (i + 1), np.uint8)
        cv2.imwrite(str(folder / f'{i:03d}.png'), img)


def test_dir_source_is_sorted_and_loops(tmp_path):
    write_frames(tmp_path / 'f')
    src = open_source(parse_source(f'dir:{tmp_path}/f'), 0, 0, loop=True)
    vals = [int(src.read()[0, 0, 0]) for _ in range(4)]
    assert vals == [40, 80, 120, 40]
    once = open_source(parse_source(f'dir:{tmp_path}/f'), 32, 24, loop=False)
    assert once.read().shape == (24, 32, 3)
    once.read(), once.read()
    with pytest.raises(SourceEnded):
        once.read()


def write_video(path, n=10, size=(64, 48)):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 30, size)
    assert out.isOpened()
    for i in range(n):
        out.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    out.release()


def test_video_file_loops_and_reports_deletion(tmp_path):
    path = tmp_path / 'v.avi'
    write_video(path, n=5)
    src = open_source(parse_source(f'file:{path}'), 0, 0, loop=True)
    frames = [src.read() for _ in range(7)]  # wraps around after 5
    assert frames[0].shape == (48, 64, 3)
    path.unlink()
    with pytest.raises(SourceLost, match='gone'):
        for _ in range(10):
            src.read()
    with pytest.raises(SourceLost):
        open_source(parse_source(f'v4l2:{tmp_path}/video99'))
