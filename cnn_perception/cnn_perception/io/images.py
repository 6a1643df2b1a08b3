"""sensor_msgs/Image and CompressedImage <-> numpy, in one place for every node.

Without a ROS install there is no cv_bridge for ROS 2 (the package index's `cv-bridge`
is ROS 1's and breaks on numpy 2), so this module does the conversion itself for rgb8,
bgr8, rgba8, bgra8, mono8, mono16, yuv422 (UYVY), yuv422_yuy2 / yuyv (YUYV), 32FC1,
16UC1 and the Bayer mosaics of machine-vision cameras (bayer_rggb8 / bggr8 / gbrg8 /
grbg8 and their 16-bit twins, demosaiced with OpenCV as cv_bridge does), honouring `step`
(row padding) and `is_bigendian`. It works on duck-typed message objects (rclpy's Image
or a rosbags Image), so `core` code and offline bag processing use it without rclpy.
Every malformed message raises `ImageError` with the reason; nothing here ever crashes
a node.
"""

import cv2
import numpy as np

# encoding -> (channels, numpy dtype)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    'rgb8': (3, np.dtype(np.uint8)),
    'bgr8': (3, np.dtype(np.uint8)),
    'rgba8': (4, np.dtype(np.uint8)),
    'bgra8': (4, np.dtype(np.uint8)),
    'mono8': (1, np.dtype(np.uint8)),
    '8UC1': (1, np.dtype(np.uint8)),
    '8UC3': (3, np.dtype(np.uint8)),
    'mono16': (1, np.dtype(np.uint16)),
    '16UC1': (1, np.dtype(np.uint16)),
    '32FC1': (1, np.dtype(np.float32)),
    'yuv422': (2, np.dtype(np.uint8)),  # UYVY
    'uyvy': (2, np.dtype(np.uint8)),
    'yuv422_yuy2': (2, np.dtype(np.uint8)),  # YUYV
    'yuyv': (2, np.dtype(np.uint8)),
    **{f'bayer_{p}8': (1, np.dtype(np.uint8)) for p in ('rggb', 'bggr', 'gbrg', 'grbg')},
    **{f'bayer_{p}16': (1, np.dtype(np.uint16)) for p in ('rggb', 'bggr', 'gbrg', 'grbg')},
}
# Raw Bayer mosaics demosaiced as cv_bridge does: OpenCV names a pattern by the 2x2 cell
# starting at the second row and column, so ROS's rggb is OpenCV's BayerBG.
BAYER_TO_RGB = {
    'rggb': cv2.COLOR_BayerBG2RGB,
    'bggr': cv2.COLOR_BayerRG2RGB,
    'gbrg': cv2.COLOR_BayerGR2RGB,
    'grbg': cv2.COLOR_BayerGB2RGB,
}
# Refuse frames bigger than this before touching their data (a 100000 x 100000 header
# must not make us allocate 30 GB).
MAX_SIDE = 16384


class ImageError(ValueError):
    """A sensor_msgs/Image that cannot be converted; the message says why."""


def image_to_numpy(msg) -> tuple[np.ndarray, str]:
    """Return (HxW or HxWxC array, encoding); a zero-copy view where the layout allows."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f'unsupported encoding {enc!r} (supported: {", ".join(ENCODINGS)})')
    channels, dtype = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f'empty image: {w}x{h}')
    if channels == 2 and w % 2:
        raise ImageError(f'{enc} packs two pixels per 4 bytes: width {w} must be even')
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ImageError(f'absurd size {w}x{h} (limit {MAX_SIDE} per side)')
    row = w * channels * dtype.itemsize
    if step == 0:
        # Some drivers leave step unset: packed rows, as cv_bridge / OpenCV read it.
        step = row
    if step < row:
        raise ImageError(f'step {step} is smaller than width x pixel size = {row}')
    data = msg.data
    n = len(data)
    if n < step * h:
        raise ImageError(f'truncated: {n} bytes of data, step x height = {step * h}')
    if n > step * h:
        raise ImageError(f'{n} bytes of data, more than step x height = {step * h}')
    buf = np.frombuffer(
        memoryview(data).cast('B') if not isinstance(data, bytes) else data, np.uint8
    )
    rows = buf.reshape(h, step)[:, :row]
    arr = rows.view(dtype.newbyteorder('>' if msg.is_bigendian else '<'))
    arr = arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)
    if msg.is_bigendian and dtype.itemsize > 1:
        arr = arr.astype(dtype)  # native byte order for everything downstream
    return arr, enc


def compressed_to_rgb8(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> HxWx3 uint8 RGB.

    `format` as image_transport's compressed plugin writes it (`rgb8; jpeg compressed
    bgr8`: original encoding; codec; the channel order that was compressed), or a bare
    codec (`jpeg`, `png`, ROS 1's `jpg`). OpenCV decodes to the stored order, which is
    BGR unless the format says `compressed rgb...`.
    """
    fmt = (msg.format or '').strip().lower()
    codec = fmt.split(';')[1].split()[0] if ';' in fmt else fmt.split(' ')[0]
    if 'compresseddepth' in fmt or codec not in ('', 'jpeg', 'jpg', 'png'):
        raise ImageError(
            f'unsupported compressed format {msg.format!r} (supported: jpeg, png, as '
            'image_transport compressed writes them)'
        )
    data = msg.data
    if len(data) == 0:
        raise ImageError('compressed image with no data')
    buf = np.frombuffer(
        memoryview(data).cast('B') if not isinstance(data, bytes) else data, np.uint8
    )
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f'undecodable {codec or "compressed"} data: {exc}') from exc
    if img is None or img.size == 0:
        raise ImageError(
            f'undecodable {codec or "compressed"} data ({len(data)} bytes; truncated or '
            'not an image)'
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f'decoded image of type {img.dtype} is not supported')
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    stored_rgb = 'compressed rgb' in fmt
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB if stored_rgb else cv2.COLOR_BGRA2RGB)
    return img if stored_rgb else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_to_rgb8(msg) -> np.ndarray:
    """Convert an Image or a CompressedImage (rclpy or rosbags message) to HxWx3 RGB."""
    if hasattr(msg, 'format'):
        return compressed_to_rgb8(msg)
    return to_rgb8(msg)


def to_rgb8(msg) -> np.ndarray:
    """Any supported Image -> HxWx3 uint8 RGB, the input every model here takes."""
    arr, enc = image_to_numpy(msg)
    return array_to_rgb8(arr, enc)


def array_to_rgb8(arr: np.ndarray, enc: str) -> np.ndarray:
    if enc in ('rgb8', '8UC3'):
        return arr
    if enc == 'bgr8':
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if enc == 'rgba8':
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2RGB)
    if enc == 'bgra8':
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    if enc in ('yuv422', 'uyvy'):
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_UYVY)
    if enc in ('yuv422_yuy2', 'yuyv'):
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_YUYV)
    if enc.startswith('bayer_'):
        rgb = cv2.cvtColor(np.ascontiguousarray(arr), BAYER_TO_RGB[enc[6:10]])
        return rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    if enc in ('mono8', '8UC1'):
        gray = arr
    elif enc in ('mono16', '16UC1'):
        gray = (arr >> 8).astype(np.uint8)
    else:  # 32FC1: depth or intensity; scale the finite range to 0..255
        finite = np.isfinite(arr)
        if not finite.any():
            raise ImageError('float image has no finite values (all NaN/inf)')
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        scaled = (np.where(finite, arr, lo) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
        gray = scaled.astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB)


def numpy_to_image(arr: np.ndarray, encoding: str, header=None):
    """Wrap an array in an rclpy sensor_msgs/Image."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported encoding {encoding!r}')
    channels, dtype = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=dtype)
    expected = 3 if channels > 1 else 2
    if arr.ndim != expected or (channels > 1 and arr.shape[2] != channels):
        raise ImageError(f'array of shape {arr.shape} does not fit encoding {encoding}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


def jpeg_msg(rgb, header, quality: int = 80):
    """Encode an RGB frame as an rclpy CompressedImage (JPEG), as image_transport does."""
    ok, buf = cv2.imencode(
        '.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError('JPEG encoding failed')
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(header=header, format='rgb8; jpeg compressed bgr8', data=buf.tobytes())


def read_rgb(path) -> np.ndarray:
    """Read an image file as HxWx3 RGB; UserError naming it when it is not one."""
    from cnn_perception.errors import UserError

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f'{path}: not a readable image file')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
