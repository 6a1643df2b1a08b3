"""What a path on disk holds as a bag, before anything is read (no ROS, no rosbags reader).

Bags travel in more shapes than `ros2 bag record` leaves behind: a lone `.mcap` written by
Foxglove or the `mcap` tool, one split piece mailed on its own, a `.db3` of the first ROS 2
releases (or a broken recording) without `metadata.yaml`, rosbag2's file-compressed pieces
(`.mcap.zstd`, `.db3.zstd`). `find_layout` tells them apart and names what is missing, so
`BagReader` opens each the same way and `bag info` can say what it found.
"""

from dataclasses import dataclass, field
from pathlib import Path
import re

from cnn_perception.errors import BagError

PIECE_SUFFIXES = ('.mcap', '.db3', '.mcap.zstd', '.db3.zstd')
STORAGE_OF = {'.mcap': 'mcap', '.db3': 'sqlite3'}


@dataclass
class Layout:
    """How a bag is laid out on disk."""

    kind: str  # 'rosbag2' (metadata.yaml), 'pieces' (storage files only), 'ros1'
    path: Path
    pieces: list[Path] = field(default_factory=list)  # present storage files, in order
    missing: list[str] = field(default_factory=list)  # pieces a split recording lacks
    metadata: dict | None = None  # metadata.yaml's rosbag2_bagfile_information
    quirks: list[str] = field(default_factory=list)

    @property
    def storage(self) -> str:
        if self.kind == 'ros1':
            return 'rosbag1'
        if self.metadata:
            return str(self.metadata.get('storage_identifier', ''))
        return STORAGE_OF.get(_storage_suffix(self.pieces[0]), '') if self.pieces else ''

    @property
    def file_compressed(self) -> bool:
        return any(p.name.endswith('.zstd') for p in self.pieces)


def _storage_suffix(path: Path) -> str:
    name = path.name.removesuffix('.zstd')
    return Path(name).suffix


def is_piece(path: Path) -> bool:
    return path.is_file() and any(path.name.endswith(s) for s in PIECE_SUFFIXES)


def _split_index(path: Path) -> tuple[str, int, str] | None:
    """Return ('<base>', i, '.<ext>') for rosbag2's split naming `<base>_<i>.<ext>`."""
    m = re.fullmatch(r'(.*)_(\d+)(\.(?:mcap|db3)(?:\.zstd)?)', path.name)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else None


def _missing_in_sequence(pieces: list[Path]) -> list[str]:
    """Names of the pieces a `<base>_0 .. <base>_N` sequence lacks (a split recording)."""
    groups: dict[tuple[str, str], set[int]] = {}
    for p in pieces:
        split = _split_index(p)
        if split is not None:
            base, i, ext = split
            groups.setdefault((base, ext), set()).add(i)
    missing = []
    for (base, ext), seen in sorted(groups.items()):
        missing += [f'{base}_{i}{ext}' for i in range(max(seen) + 1) if i not in seen]
    return missing


def _piece_order(path: Path):
    split = _split_index(path)
    return (split[0], split[1], path.name) if split else (path.name, -1, path.name)


def find_layout(path: str | Path) -> Layout:
    """Tell what `path` holds; BagError in one line when it is no bag at all."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag (file or directory)')
    if path.is_file() and path.suffix == '.bag':
        return Layout('ros1', path)
    if path.is_file():
        codec = path.suffixes[-1][1:] if len(path.suffixes) > 1 else ''
        if path.suffixes[-2:-1] in (['.mcap'], ['.db3']) and codec != 'zstd':
            raise BagError(
                f'{path}: a piece compressed with {codec}: rosbag2 compresses with zstd, the '
                'only codec read here; decompress it first'
            )
        if not is_piece(path):
            raise BagError(
                f'{path}: not a bag: expected a rosbag2 directory, a .mcap or .db3 file '
                '(also .mcap.zstd / .db3.zstd), or a ROS 1 .bag file'
            )
        layout = Layout('pieces', path, [path])
        layout.quirks.append(f'a lone {path.name.split(".", 1)[1]} file, no metadata.yaml')
        return layout
    meta_file = path / 'metadata.yaml'
    present = sorted((p for p in path.iterdir() if is_piece(p)), key=_piece_order)
    if meta_file.is_file():
        try:
            meta = yaml.safe_load(meta_file.read_text())['rosbag2_bagfile_information']
            names = [Path(x).name for x in meta['relative_file_paths']]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise BagError(f'{meta_file}: unreadable metadata ({type(exc).__name__})') from exc
        missing = [n for n in names if not (path / n).is_file()]
        if not missing:
            return Layout('rosbag2', path, [path / n for n in names], metadata=meta)
        pieces = [path / n for n in names if (path / n).is_file()]
        if not pieces:
            raise BagError(f'{path}: every piece metadata.yaml names is missing: {missing}')
        layout = Layout('pieces', path, pieces, missing, metadata=meta)
        layout.quirks.append(f'split recording with piece(s) missing: {", ".join(missing)}')
        return layout
    if not present:
        raise BagError(
            f'{path}: not a bag: no metadata.yaml and no .mcap / .db3 piece in it (a ROS 1 '
            'bag is a .bag file: pass the file)'
        )
    layout = Layout('pieces', path, present, _missing_in_sequence(present))
    layout.quirks.append(f'no metadata.yaml: read from {len(present)} piece(s)')
    if layout.missing:
        layout.quirks.append(f'split recording with piece(s) missing: {", ".join(layout.missing)}')
    if len({STORAGE_OF.get(_storage_suffix(p)) for p in present}) > 1:
        raise BagError(f'{path}: mixes .mcap and .db3 pieces; pass one of them')
    return layout
