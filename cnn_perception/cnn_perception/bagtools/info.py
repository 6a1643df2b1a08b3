"""`bag info`: topics, types, counts and duration of a rosbag2 directory or ROS 1 bag."""

from pathlib import Path

from cnn_perception.io.bags import BagReader


def info(bag: Path) -> dict:
    import yaml

    reader = BagReader(bag)
    if reader.ros1:
        bag_meta = {
            'storage_identifier': 'rosbag1',
            'version': 'ROS 1',
            'files': [{'path': Path(bag).name}],
        }
    else:
        raw_meta = yaml.safe_load((Path(bag) / 'metadata.yaml').read_text())
        bag_meta = raw_meta['rosbag2_bagfile_information']
    folder = Path(bag).parent if reader.ros1 else Path(bag)
    try:
        topics = {}
        for c in reader.connections:
            t = topics.setdefault(c.topic, {'type': c.msgtype, 'count': 0})
            t['count'] += c.msgcount
        meta = {
            'path': str(bag),
            'storage': bag_meta['storage_identifier'],
            'version': bag_meta['version'],
            'messages': reader.message_count,
            'start_ns': reader.start_time if reader.message_count else 0,
            'end_ns': reader.end_time if reader.message_count else 0,
            'duration_s': reader.duration / 1e9 if reader.message_count else 0.0,
            'files': [str(folder / f['path']) for f in bag_meta.get('files', [])],
            'size_bytes': sum(
                (folder / f['path']).stat().st_size for f in bag_meta.get('files', [])
            ),
            'topics': topics,
        }
    finally:
        reader.close()
    return meta


def format_info(meta: dict) -> str:
    lines = [
        f'Files:             {", ".join(Path(f).name for f in meta["files"])}',
        f'Bag size:          {meta["size_bytes"] / 1e6:.1f} MB',
        f'Storage id:        {meta["storage"]} (rosbag2 version {meta["version"]})',
        f'Duration:          {meta["duration_s"]:.3f} s',
        f'Start:             {meta["start_ns"] / 1e9:.3f}',
        f'End:               {meta["end_ns"] / 1e9:.3f}',
        f'Messages:          {meta["messages"]}',
        'Topic information:',
    ]
    for topic, t in sorted(meta['topics'].items()):
        lines.append(f'  Topic: {topic} | Type: {t["type"]} | Count: {t["count"]}')
    return '\n'.join(lines)
