"""Node parameters without rclpy: their declarations, checks and the YAML files they live in.

A node declares its `Param`s with ROS descriptors (`nodes/common.declare_params`); offline
tools (`bag process`, `report`) read the same parameters from the same YAML file with
`params_from_file`, so a setting means the same thing live and offline.
"""

from dataclasses import dataclass
import fnmatch
from pathlib import Path
from typing import Any

from cnn_perception.errors import UserError


@dataclass(frozen=True)
class Param:
    """A parameter: default, description, optional range / choices, live or restart-only."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False  # changeable at run time; otherwise changes are rejected


def check_value(p: Param, value: Any) -> str | None:
    """Return why `value` is not acceptable for `p`, or None."""
    if type(value) is not type(p.default) and not (
        isinstance(p.default, float) and type(value) is int
    ):
        return f'expected {type(p.default).__name__}, got {type(value).__name__}'
    if p.choices and value not in p.choices:
        return f'{value!r} is not one of {", ".join(p.choices)}'
    if p.low is not None and not (p.low <= value <= p.high):
        return f'{value} is out of range [{p.low}, {p.high}]'
    return None


def _matches(pattern: str, fqn: str) -> bool:
    """Rcl's node-name wildcards: `/**` any number of segments, `*` one segment."""
    pattern = '/' + pattern.strip('/')
    if pattern == '/**':
        return True
    if pattern.startswith('/**/'):
        tail = pattern[4:]
        parts = fqn.strip('/').split('/')
        return any(fnmatch.fnmatchcase('/'.join(parts[i:]), tail) for i in range(len(parts)))
    return fnmatch.fnmatchcase(fqn, pattern)


def params_from_file(
    path: str | Path | None, node: str, params: list[Param], namespace: str = ''
) -> dict[str, Any]:
    """Values of `params` for node `node` as a ROS params file sets them, defaults elsewhere.

    Sections apply in file order, as rcl applies them; each value is checked like a
    node's, so a bad value fails here in one line naming the file and the parameter.
    """
    import yaml

    values = {p.name: p.default for p in params}
    if not path:
        return values
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f'{path}: cannot read the parameters file ({exc})') from exc
    from cnn_perception.contract import NAMESPACE

    fqn = f'{(namespace or NAMESPACE).rstrip("/")}/{node}'
    spec = {p.name: p for p in params}
    for key, section in doc.items():
        if not isinstance(section, dict) or not (_matches(key, fqn) or key == node):
            continue
        for name, value in (section.get('ros__parameters') or {}).items():
            if name not in spec:
                continue
            problem = check_value(spec[name], value)
            if problem:
                raise UserError(f'{path}: parameter {node}.{name}: {problem}')
            values[name] = value
    return values
