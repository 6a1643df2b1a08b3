"""`bag info`: what a bag is (shape, pieces, compression), its topics, and its quirks."""

from pathlib import Path

from cnn_perception.io.bags import IMAGE_TYPES, BagReader


def info(bag: Path) -> dict:
    """Describe any bag BagReader opens; image topics with the encoding of their first frame."""
    with BagReader(bag) as reader:
        layout = reader.layout
        meta = layout.metadata or {}
        topics = {}
        for c in reader.connections:
            t = topics.setdefault(c.topic, {'type': c.msgtype, 'count': 0})
            t['count'] += c.msgcount
        for c in reader.connections:
            if c.msgtype in IMAGE_TYPES and 'encoding' not in topics[c.topic]:
                topics[c.topic]['encoding'] = _first_encoding(reader, c)
        files = layout.pieces if layout.pieces else [layout.path]
        return {
            'path': str(bag),
            'format': {'rosbag2': 'rosbag2 directory', 'ros1': 'ROS 1 bag'}.get(
                layout.kind, 'storage piece(s) without metadata.yaml'
            ),
            'storage': layout.storage,
            'version': meta.get('version', 'ROS 1' if reader.ros1 else 'none'),
            'compression': reader.compression or 'none',
            'messages': reader.message_count,
            'start_ns': reader.start_time if reader.message_count else 0,
            'end_ns': reader.end_time if reader.message_count else 0,
            'duration_s': reader.duration / 1e9 if reader.message_count else 0.0,
            'files': [str(f) for f in files],
            'missing_files': list(layout.missing),
            'size_bytes': sum(f.stat().st_size for f in files),
            'topics': topics,
            'quirks': list(reader.quirks),
        }


def _first_encoding(reader: BagReader, conn) -> str:
    """Return the first frame's `encoding` (Image) or `format` (CompressedImage), or '?'."""
    for _, _, raw in reader.messages([conn]):
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception:  # a bad first frame: bag process names it, info only says '?'
            return '?'
        if not msg.header.stamp.sec and not msg.header.stamp.nanosec:
            reader.quirks.append('header stamp 0 (first frame): record time is used instead')
        return str(getattr(msg, 'format', None) or getattr(msg, 'encoding', ''))
    return ''


def format_info(meta: dict) -> str:
    lines = [
        f'Files:             {", ".join(Path(f).name for f in meta["files"])}',
        f'Format:            {meta["format"]}',
        f'Bag size:          {meta["size_bytes"] / 1e6:.1f} MB',
        f'Storage id:        {meta["storage"]} (rosbag2 version {meta["version"]})',
        f'Compression:       {meta["compression"]}',
        f'Duration:          {meta["duration_s"]:.3f} s',
        f'Start:             {meta["start_ns"] / 1e9:.3f}',
        f'End:               {meta["end_ns"] / 1e9:.3f}',
        f'Messages:          {meta["messages"]}',
        'Topic information:',
    ]
    if meta['missing_files']:
        lines.insert(1, f'Missing pieces:    {", ".join(meta["missing_files"])}')
    for topic, t in sorted(meta['topics'].items()):
        enc = f' | Encoding: {t["encoding"]}' if 'encoding' in t else ''
        lines.append(f'  Topic: {topic} | Type: {t["type"]} | Count: {t["count"]}{enc}')
    lines += [f'Quirk:             {q}' for q in meta['quirks']]
    return '\n'.join(lines)
