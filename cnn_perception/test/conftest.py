"""Shared test set-up: a ROS domain of its own per run, helpers for real ROS processes.

Parallel test runs on one machine must not hear each other, hence the domain id.
"""

import os
from pathlib import Path
import subprocess
import sys
import time

import pytest

TEST_DIR = Path(__file__).resolve().parent
REPO = TEST_DIR.parents[1]

# Domain ids 0..101 and 215..232 are the safe range on Linux; keep clear of 0 (the
# default a developer's own ROS graph uses).
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
# Only this machine's processes: tests never talk to the network.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


def python_process(*args: str, **kwargs) -> subprocess.Popen:
    """Start `python <args>` with this test run's environment (same ROS domain).

    Its output is collected line by line in `proc.lines` by a reader thread, so a test
    can wait for a line while the process runs (`wait_for_line`).
    """
    import threading

    proc = subprocess.Popen(
        [sys.executable, *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )
    proc.lines = []

    def pump():
        for line in proc.stdout:
            proc.lines.append(line)

    proc.reader = threading.Thread(target=pump, daemon=True)
    proc.reader.start()
    return proc


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in proc.lines):
            return True
        if proc.poll() is not None:
            proc.reader.join(2)
            return any(text in line for line in proc.lines)
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, sig: int = 2) -> str:
    """SIGINT (or `sig`), then SIGKILL if it hangs; returns what it printed."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.reader.join(5)
    return ''.join(proc.lines)


@pytest.fixture
def rclpy_context():
    """Give one test a fresh rclpy Context, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


def spin_until(node, predicate, timeout: float, executor=None) -> bool:
    """spin_once in a deadline loop until predicate() is true."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


class Probe:
    """A node in the test process that records what arrives on topics."""

    def __init__(self, context, name: str = 'probe'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.got: dict[str, list] = {}

    def listen(self, msg_type, topic: str, qos=10, raw: bool = False) -> list:
        box = self.got.setdefault(topic, [])
        self.node.create_subscription(
            msg_type, topic, lambda m: box.append((time.monotonic(), m)), qos, raw=raw
        )
        return box

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.node, predicate, timeout, self.executor)

    def publish_until(self, pub, msg, predicate, tries: int = 120, wait: float = 0.5) -> bool:
        """Publish msg every `wait` s until predicate holds; return whether it does.

        A node that is still starting drops best-effort frames, so one publish is not
        enough; at most `tries` times.
        """
        for _ in range(tries):
            pub.publish(msg)
            if self.spin_until(predicate, wait):
                return True
        return predicate()

    def spin_for(self, seconds: float) -> None:
        spin_until(self.node, lambda: False, seconds, self.executor)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def probe(rclpy_context):
    p = Probe(rclpy_context)
    try:
        yield p
    finally:
        p.close()


def run_cli(*args: str) -> subprocess.Popen:
    """`python -m cnn_perception <args>` as its own OS process."""
    return python_process('-m', 'cnn_perception', *args)


def cli_run(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m cnn_perception <args>` to completion; output captured as text."""
    return subprocess.run(
        [sys.executable, '-m', 'cnn_perception', *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def set_param(probe, name, value, node: str = 'classifier'):
    """Set one parameter of a running node through its set_parameters service."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from cnn_perception.contract import NAMESPACE

    cli = probe.node.create_client(SetParameters, f'{NAMESPACE}/{node}/set_parameters')
    assert cli.wait_for_service(timeout_sec=30)
    pv = ParameterValue()
    if isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    else:
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
    fut = cli.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
    assert probe.spin_until(fut.done, 10)
    return fut.result().results[0]


def coffee_without_torch(load_args: str, check: str = '') -> str:
    """Classify the coffee photograph in a fresh interpreter; fail if torch gets imported.

    `load_args`: the arguments of `load_classifier(...)` as Python source; `check`: more
    source run on the classifier `c` first. Returns the top-1 label.
    """
    code = (
        'import sys; from skimage import data\n'
        'from cnn_perception.core.classifier import load_classifier\n'
        f'c = load_classifier({load_args})\n'
        f'{check}\n'
        'r = c.predict(data.coffee(), 1).results[0]\n'
        'assert "torch" not in sys.modules, "torch was imported"\n'
        'print(r.label)\n'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def diag_value(diags, node: str, key: str) -> str | None:
    """Return the newest value of `key` in the /diagnostics statuses of `node`.

    `diags`: what `Probe.listen(DiagnosticArray, '/diagnostics')` collects; a status
    belongs to `node` when its name ends with it (names carry the namespace).
    """
    for _, arr in reversed(diags):
        for status in arr.status:
            if status.name.endswith(node):
                for kv in status.values:
                    if kv.key == key:
                        return kv.value
    return None
