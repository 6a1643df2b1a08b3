"""The package's shape: imports point down (no cycles), core/ without ROS, modules small.

Read from the source with `ast` (every import, also those inside functions), so a cycle
that only shows when two lazy imports meet at run time is found here first.
"""

import ast
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[1] / 'cnn_perception'
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob('*.py'):
        parts = path.relative_to(PKG.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        out[name] = path
    return out


def imports(path: Path, name: str, known: dict) -> set[str]:
    """Return the package modules `path` imports (`from pkg import module`: the module)."""
    found = set()
    is_pkg = path.name == '__init__.py'
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative: resolve against this module's package
                pkg = name.split('.') if is_pkg else name.split('.')[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = '.'.join([*pkg, base] if base else pkg)
            for a in node.names:
                sub = f'{base}.{a.name}'
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> nx.DiGraph:
    known = modules()
    g = nx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        for target in imports(path, name, known):
            # a package's __init__ importing its own modules is how packages re-export
            if not (path.name == '__init__.py' and target.startswith(name + '.')):
                g.add_edge(name, target)
    return g


def test_no_import_cycle_in_the_runtime_package():
    cycles = sorted(sorted(c) for c in nx.simple_cycles(graph()))
    assert cycles == [], 'import cycles: ' + '; '.join(' <-> '.join(c) for c in cycles)


def test_core_needs_no_ros():
    """core/ is plain numpy / torch / ONNX Runtime: no rclpy, no messages, nothing above it."""
    for name, path in modules().items():
        if not name.startswith('cnn_perception.core'):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or '']
            else:
                continue
            for n in names:
                top = n.split('.')[0]
                assert top != 'rclpy' and not top.endswith('_msgs'), (name, n)
                assert not n.startswith(('cnn_perception.nodes', 'cnn_perception.steps')), (
                    name,
                    n,
                )


def test_no_module_over_the_size_limit():
    big = {
        m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f'split these by job: {big}'
