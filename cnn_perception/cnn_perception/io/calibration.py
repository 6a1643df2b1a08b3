"""CameraInfo from a calibration YAML in the standard camera_info format."""

from pathlib import Path

import yaml

from cnn_perception.errors import UserError


class CalibrationError(UserError):
    """A calibration file that is missing, malformed or of the wrong size."""


def _matrix(doc: dict, key: str, rows: int, cols: int, path: Path) -> list[float]:
    m = doc.get(key)
    data = m.get('data') if isinstance(m, dict) else None
    if not isinstance(data, list) or len(data) != rows * cols:
        raise CalibrationError(f'{path}: {key} must have {rows}x{cols} values in data')
    return [float(v) for v in data]


def load_camera_info(url: str, width: int, height: int):
    """CameraInfo for the given output size; uncalibrated (zeros) when url is empty."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.width, info.height = max(0, width), max(0, height)
    if not url:
        return info
    path = Path(url.removeprefix('file://'))
    if not path.is_file():
        raise CalibrationError(f'{path}: no such calibration file (camera_info_url)')
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CalibrationError(f'{path}: not valid YAML ({str(exc).splitlines()[0]})') from exc
    if not isinstance(doc, dict):
        raise CalibrationError(f'{path}: not a camera_info calibration file')
    try:
        w, h = int(doc['image_width']), int(doc['image_height'])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f'{path}: image_width and image_height are required') from exc
    if (width > 0 and w != width) or (height > 0 and h != height):
        raise CalibrationError(
            f'{path}: calibrated for {w}x{h} but the camera publishes {width}x{height}; '
            'calibrate at this size or set width/height to match'
        )
    info.width, info.height = w, h
    info.k = _matrix(doc, 'camera_matrix', 3, 3, path)
    dist = doc.get('distortion_coefficients', {}).get('data', [])
    info.d = [float(v) for v in dist]
    info.distortion_model = str(doc.get('distortion_model', 'plumb_bob'))
    if 'rectification_matrix' in doc:
        info.r = _matrix(doc, 'rectification_matrix', 3, 3, path)
    else:
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = _matrix(doc, 'projection_matrix', 3, 4, path)
    return info
