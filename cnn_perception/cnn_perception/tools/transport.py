"""`bench --transport`: what compressed images cost and save, measured in one run.

Bytes on the wire per 640x480 camera frame, raw sensor_msgs/Image against the camera's
JPEG twin (CompressedImage, its default quality), and the milliseconds to encode (camera
side) and decode (node side, `compressed_to_rgb8`) a frame against the classifier's own
`inference_ms` on the same frame.
"""

import statistics
import time


def transport(quality: int = 80, repeats: int = 50, log=print) -> dict:
    import cv2
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.io.images import compressed_to_rgb8, jpeg_msg, numpy_to_image
    from cnn_perception.io.sources import TestScene

    scene = TestScene(640, 480)
    frames = [scene.read() for _ in range(10)]
    header = Header(frame_id='camera_optical_frame')
    raw_bytes = len(
        serialize_message(
            numpy_to_image(cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR), 'bgr8', header)
        )
    )
    enc_ms, dec_ms, jpeg_bytes = [], [], []
    for i in range(repeats):
        rgb = frames[i % len(frames)]
        t0 = time.perf_counter()
        msg = jpeg_msg(rgb, header, quality)
        enc_ms.append((time.perf_counter() - t0) * 1000)
        jpeg_bytes.append(len(serialize_message(msg)))
        t0 = time.perf_counter()
        compressed_to_rgb8(msg)
        dec_ms.append((time.perf_counter() - t0) * 1000)
    log('transport: classifier on the same frames ...')
    clf = load_classifier()
    clf.warm_up(3)
    inf = [clf.predict(frames[i % len(frames)]).inference_ms for i in range(repeats)]
    return {
        'quality': quality,
        'raw_bytes': raw_bytes,
        'jpeg_bytes': statistics.median(jpeg_bytes),
        'encode_ms': statistics.median(enc_ms),
        'decode_ms': statistics.median(dec_ms),
        'inference_ms': statistics.median(inf),
    }


def transport_markdown(r: dict) -> str:
    ratio = r['raw_bytes'] / r['jpeg_bytes']
    return (
        '\n'.join(
            [
                f'640x480 frames of the `test:` scene (real photographs), JPEG quality '
                f"{r['quality']} (the camera's `jpeg_quality` default), medians of 50.",
                '',
                '| measurement | value |',
                '|---|---|',
                f'| raw `camera/image_raw` (bgr8, CDR) | {r["raw_bytes"] / 1e3:.0f} kB '
                'per frame |',
                f'| `camera/image_raw/compressed` (JPEG, CDR) | {r["jpeg_bytes"] / 1e3:.1f} '
                f'kB per frame: **{ratio:.0f}x smaller** |',
                f'| JPEG encode (camera, only while subscribed) | {r["encode_ms"]:.2f} ms |',
                f'| JPEG decode (node, processed frames only) | {r["decode_ms"]:.2f} ms = '
                f"{r['decode_ms'] / r['inference_ms']:.2f} x the classifier's inference_ms "
                f'({r["inference_ms"]:.2f} ms) |',
            ]
        )
        + '\n'
    )
