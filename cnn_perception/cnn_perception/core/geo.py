"""Where the drone was: position fixes and poses by stamp, interpolated (no rclpy).

Positions come from sensor_msgs/NavSatFix (latitude, longitude, altitude) and/or
geometry_msgs/PoseStamped / nav_msgs/Odometry (x, y, z in a local frame). A query at a
stamp interpolates linearly between the two nearest samples; outside the covered time,
up to `max_gap_s` away, the nearest sample is used, and beyond that there is no answer.
Local metres from lat/lon are east/north of the first fix (equirectangular: exact to a
few centimetres over the few hundred metres of an inspection flight).
"""

from bisect import bisect_left
from dataclasses import dataclass
import math

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Position:
    east_m: float
    north_m: float
    up_m: float
    latitude: float | None = None  # None when only a local pose is known
    longitude: float | None = None
    altitude: float | None = None

    @property
    def has_fix(self) -> bool:
        return self.latitude is not None


def local_metres(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    """(east, north) metres of (lat, lon) from (lat0, lon0)."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def lat_lon(east: float, north: float, lat0: float, lon0: float) -> tuple[float, float]:
    """Inverse of `local_metres`."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return lat0 + north / k, lon0 + east / (k * math.cos(math.radians(lat0)))


class PositionTrack:
    """Samples of one position source, kept sorted by stamp (nanoseconds)."""

    def __init__(self, max_gap_s: float = 1.0):
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.stamps: list[int] = []
        self.values: list[tuple[float, ...]] = []  # (east, north, up, lat, lon, alt)
        self.origin: tuple[float, float] | None = None  # first fix (lat, lon)
        self.kind = ''

    def __len__(self) -> int:
        return len(self.stamps)

    def _insert(self, ns: int, value: tuple) -> None:
        i = bisect_left(self.stamps, ns)
        if i < len(self.stamps) and self.stamps[i] == ns:
            self.values[i] = value
            return
        self.stamps.insert(i, ns)
        self.values.insert(i, value)

    def add_fix(self, ns: int, lat: float, lon: float, alt: float = 0.0) -> None:
        if not (math.isfinite(lat) and math.isfinite(lon)) or (lat == 0.0 and lon == 0.0):
            return  # no fix yet (NavSatFix with status -1 often carries zeros or NaN)
        if self.origin is None:
            self.origin = (lat, lon)
            self.kind = 'fix'
        east, north = local_metres(lat, lon, *self.origin)
        self._insert(ns, (east, north, alt if math.isfinite(alt) else 0.0, lat, lon, alt))

    def add_pose(self, ns: int, x: float, y: float, z: float = 0.0) -> None:
        self.kind = self.kind or 'pose'
        self._insert(ns, (x, y, z, math.nan, math.nan, math.nan))

    def path(self) -> list[tuple[float, float]]:
        """(east, north) of every sample, in time order (the flight path)."""
        return [(v[0], v[1]) for v in self.values]

    def at(self, ns: int) -> Position | None:
        if not self.stamps:
            return None
        i = bisect_left(self.stamps, ns)
        if i < len(self.stamps) and self.stamps[i] == ns:
            return _position(self.values[i])
        if i == 0 or i == len(self.stamps):
            j = 0 if i == 0 else len(self.stamps) - 1
            if abs(self.stamps[j] - ns) > self.max_gap_ns:
                return None
            return _position(self.values[j])
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if t1 - t0 > 2 * self.max_gap_ns:
            return None  # a hole in the track: do not invent a straight line
        w = (ns - t0) / (t1 - t0)
        a, b = self.values[i - 1], self.values[i]
        return _position(tuple(x + w * (y - x) for x, y in zip(a, b, strict=True)))


def _position(v: tuple) -> Position:
    east, north, up, lat, lon, alt = v
    if math.isnan(lat):
        return Position(east, north, up)
    return Position(east, north, up, lat, lon, alt)
