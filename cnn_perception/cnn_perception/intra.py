"""Frames handed between nodes of one process without DDS (no rclpy; unit-tested alone).

What rclcpp's intra-process communication does for composed C++ nodes, for the Python
nodes of one `pipeline` process: the camera hands its frame (an RGB array and the
header) straight to the processing nodes subscribed to the same topic in the same
context, and publishes over DDS only while somebody outside the process subscribes too
(rviz, `bag record`, a node in another process). Pushing a frame through Fast DDS's
shared memory costs the camera CPU per frame, and every subscriber a copy and a
deserialisation more (measured: docs/benchmarks.md, commit 98f0791); the hand-over here
passes a reference.

Rules that keep it equivalent to the topic:
- only raw `sensor_msgs/Image` subscribers on the exact resolved topic take part;
- the frame is read-only and never reused by the publisher (sources return a new
  array per frame), so every taker may keep it;
- a frame that also went out over DDS (because an outside subscriber exists) reaches
  the local subscribers twice: the copy from DDS is recognised by its stamp and
  dropped (`FrameHub.seen`).

Each frame gets a sequence number from its hub (`seq`): that is how a node knows a frame
it was given twice in-process (by the camera and by a leading head), never `id()` of the
array, which Python reuses once a frame is gone.

Heads sharing one backbone pass (core/shared.py) also pass frames on here: the leading
head (the classifier) hands each frame it processed over to the heads that `follow` it on
this topic (`hand_over`), whose pass is then already computed; they take the camera's
frames themselves only while the leader hands none over (`leading`).

CNN_PERCEPTION_INTRA_PROCESS=0 turns it off (every frame over DDS, as between processes),
for A/B measurements and for ruling it out when debugging.
"""

from collections import deque
from collections.abc import Callable
import itertools
import os
import struct
import threading
import time
from typing import Any
import weakref

_hubs: 'weakref.WeakKeyDictionary[Any, dict[str, FrameHub]]' = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class FrameHub:
    """The in-process subscribers of one image topic in one rclpy context."""

    @staticmethod
    def get(context: Any, topic: str) -> 'FrameHub':
        """Return the hub of `topic` (a resolved name) in `context`, made on first use."""
        with _lock:
            per_context = _hubs.setdefault(context, {})
            if topic not in per_context:
                per_context[topic] = FrameHub(topic)
            return per_context[topic]

    def __init__(self, topic: str):
        self.topic = topic
        self._takers: list[Callable[[Any, Any, int], None]] = []
        self._followers: list[Callable[[Any, Any, int], None]] = []
        self._recent: deque[int] = deque(maxlen=16)
        self._seq = itertools.count(1)
        self._handed_at = -1e18  # monotonic time of the leader's last hand-over
        self._lock = threading.Lock()
        self.errors = 0
        self.last_error = ''

    def subscribe(self, take: Callable[[Any, Any, int], None]) -> None:
        """`take(header, rgb, seq)` is called (on the publisher's thread) for every frame."""
        if os.environ.get('CNN_PERCEPTION_INTRA_PROCESS', '1') == '0':
            return
        with self._lock:
            self._takers.append(take)

    def unsubscribe(self, take: Callable[[Any, Any, int], None]) -> None:
        with self._lock:
            if take in self._takers:
                self._takers.remove(take)
            if take in self._followers:
                self._followers.remove(take)

    @property
    def local_count(self) -> int:
        return len(self._takers)

    def publish(self, header: Any, rgb: Any, stamp_ns: int) -> int:
        """Hand the frame to every local subscriber; returns how many took it."""
        rgb.flags.writeable = False
        with self._lock:
            takers = list(self._takers)
            if takers:
                self._recent.append(stamp_ns)
            seq = next(self._seq)
        for take in takers:
            try:
                take(header, rgb, seq)
            except Exception as exc:  # one node's hand-over must not stop the camera
                self.errors += 1
                self.last_error = f'{type(exc).__name__}: {exc}'
        return len(takers)

    def follow(self, take: Callable[[Any, Any, int], None]) -> None:
        """`take(header, rgb, seq)` gets every frame a leading head hands over."""
        with self._lock:
            self._followers.append(take)

    def hand_over(self, header: Any, rgb: Any, seq: int) -> None:
        """Pass a frame the leading head just processed on to the heads that follow it.

        Called on the leader's thread right after its step; `take` must be quick (the
        followers' latest-frame workers only keep the frame).
        """
        if not self._followers:
            return  # the classifier alone: nobody to hand over to
        with self._lock:
            self._handed_at = time.monotonic()
            followers = list(self._followers)
        for take in followers:
            take(header, rgb, seq)

    def leading(self, within_s: float) -> bool:
        """Whether a leading head handed over a frame in the last `within_s` seconds."""
        return time.monotonic() - self._handed_at <= within_s

    def seen(self, raw: bytes) -> bool:
        """Whether a serialised Image from DDS is a frame this hub already handed over."""
        if not self._recent:
            return False
        stamp = cdr_stamp_ns(raw)
        with self._lock:
            return stamp is not None and stamp in self._recent


def cdr_stamp_ns(raw: bytes) -> int | None:
    """Read the header stamp of a CDR-serialised message that starts with a Header."""
    if len(raw) < 12:
        return None
    endian = '<' if raw[1] & 1 else '>'  # encapsulation kind: CDR_LE is 0x0001
    sec, nsec = struct.unpack_from(endian + 'iI', raw, 4)
    return sec * 1_000_000_000 + nsec
