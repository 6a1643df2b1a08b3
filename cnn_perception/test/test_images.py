"""Image conversion against OpenCV, for every encoding, with property-based tests."""

import cv2
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
import numpy as np
import pytest
from sensor_msgs.msg import Image

from cnn_perception.io.images import (
    ImageError,
    image_to_numpy,
    numpy_to_image,
    to_rgb8,
)


def make_msg(arr: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """Build an Image by hand (row padding, byte order) -- not with the code under test."""
    if big_endian:
        arr = arr.astype(arr.dtype.newbyteorder('>'))
    rows = arr.reshape(arr.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=rows.shape[1],
    )
    msg.data = rows.tobytes()
    return msg


sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@st.composite
def images(draw, channels, dtype=np.uint8, even_width=False):
    h, w = draw(sizes)
    if even_width:
        w = 2 * w
    shape = (h, w, channels) if channels > 1 else (h, w)
    return draw(arrays(dtype, shape))


CV2_TO_RGB = {
    'rgb8': (3, None),
    'bgr8': (3, cv2.COLOR_BGR2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, cv2.COLOR_BGRA2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
}


@pytest.mark.parametrize('encoding', sorted(CV2_TO_RGB))
@settings(max_examples=60, deadline=None)
@given(data=st.data(), pad=st.integers(0, 7))
def test_uint8_encodings_match_opencv(encoding, data, pad):
    channels, code = CV2_TO_RGB[encoding]
    arr = data.draw(images(channels))
    msg = make_msg(arr, encoding, pad)
    got, enc = image_to_numpy(msg)
    assert enc == encoding and np.array_equal(got, arr)
    expected = arr if code is None else cv2.cvtColor(arr, code)
    assert np.array_equal(to_rgb8(msg), expected)


@settings(max_examples=60, deadline=None)
@given(arr=images(1, np.uint16), pad=st.sampled_from([0, 2, 6]), big=st.booleans())
def test_mono16_honours_step_and_byte_order(arr, pad, big):
    msg = make_msg(arr, 'mono16', pad, big_endian=big)
    got, _ = image_to_numpy(msg)
    assert got.dtype == np.uint16 and np.array_equal(got, arr)
    expected = cv2.cvtColor((arr >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    assert np.array_equal(to_rgb8(msg), expected)


@pytest.mark.parametrize(
    'encoding,code',
    [
        ('yuv422', cv2.COLOR_YUV2RGB_UYVY),
        ('uyvy', cv2.COLOR_YUV2RGB_UYVY),
        ('yuv422_yuy2', cv2.COLOR_YUV2RGB_YUYV),
        ('yuyv', cv2.COLOR_YUV2RGB_YUYV),
    ],
)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), pad=st.integers(0, 5))
def test_yuv422_matches_opencv(encoding, code, data, pad):
    arr = data.draw(images(2, even_width=True))
    msg = make_msg(arr, encoding, pad)
    assert np.array_equal(to_rgb8(msg), cv2.cvtColor(arr, code))


@settings(max_examples=40, deadline=None)
@given(arr=images(3))
def test_numpy_to_image_round_trips(arr):
    for enc in ('rgb8', 'bgr8'):
        msg = numpy_to_image(arr, enc)
        assert msg.step == arr.shape[1] * 3
        assert np.array_equal(image_to_numpy(msg)[0], arr)


def test_float_images_with_nan_are_scaled_or_rejected():
    arr = np.array([[0.0, np.nan], [2.0, 4.0]], np.float32)
    rgb = to_rgb8(make_msg(arr, '32FC1'))
    assert rgb.shape == (2, 2, 3) and rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0
    with pytest.raises(ImageError, match='no finite values'):
        to_rgb8(make_msg(np.full((2, 2), np.nan, np.float32), '32FC1'))


def bad(**kw) -> Image:
    msg = Image(height=2, width=2, encoding='rgb8', step=6)
    msg.data = bytes(12)
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize(
    'msg,why',
    [
        (bad(encoding='jpeg'), 'unsupported encoding'),
        (bad(width=0), 'empty image'),
        (bad(height=0), 'empty image'),
        (bad(step=5), 'step 5 is smaller'),
        (bad(data=bytes(11)), 'truncated'),
        (bad(data=bytes(13)), 'more than step x height'),
        (bad(width=100000, height=100000, step=300000), 'absurd size'),
    ],
)
def test_malformed_images_raise_a_clear_error(msg, why):
    with pytest.raises(ImageError, match=why):
        to_rgb8(msg)
