"""`bench --lifecycle`: managed nodes deactivated and cleaned up, as a lifecycle manager would.

All four nodes in one `run --lifecycle --no-autostart` process (the desktop
configuration, the test camera), driven from this process over DDS through their
lifecycle services (`tools/lifecycle.py`): the process's CPU while active and while
deactivated (30 s each), its RSS in every state, and the latency from the activate calls
to the first classification, cold (after configure) and after a cleanup and configure.
"""

import os
import subprocess
import sys
import time

ORDER = ('camera', 'classifier', 'defects', 'features')


def _cpu_share(ps, seconds: float) -> float:
    """Return the process's CPU over `seconds`, in percent of one core (threads summed)."""
    t0, c0 = time.monotonic(), ps.cpu_times()
    time.sleep(seconds)
    c1 = ps.cpu_times()
    return 100.0 * (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0)


def lifecycle(log=print, window_s: float = 30.0) -> dict:
    import psutil
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from cnn_perception import contract, platforms
    from cnn_perception.nodes.common import RESULT_QOS
    from cnn_perception.tools.lifecycle import LifecycleClient, wait_for

    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    cmd = [sys.executable, '-m', 'cnn_perception', 'run', '--source', 'test:']
    proc = subprocess.Popen(
        [*cmd, '--lifecycle', '--no-autostart'],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('lifecycle_bench', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            ex.spin_once(timeout_sec=0.05)
        return pred()

    from cnn_perception_msgs.msg import Classification

    got = []
    node.create_subscription(
        Classification,
        contract.CLASSIFICATION.full(),
        lambda m: got.append(time.monotonic()),
        RESULT_QOS,
    )
    ps = psutil.Process(proc.pid)
    res: dict = {'window_s': window_s, 'rss_mb': {}, 'cpu_pct': {}, 'first_result_s': {}}
    mb = lambda: ps.memory_info().rss / 2**20  # noqa: E731

    def all_(transition, keys=ORDER):
        for k in keys:
            if not nodes[k].change(transition):
                raise RuntimeError(f'{k}: {transition} failed')

    def activate(label):
        got.clear()
        t0 = time.monotonic()
        all_('activate', ORDER[::-1])  # the camera last, its frames find the others ready
        if not spin_until(lambda: bool(got), 60):
            raise RuntimeError('no classification after activate')
        res['first_result_s'][label] = got[0] - t0

    try:
        nodes = {}
        for k in ORDER:
            fqn = f'{platforms.DEFAULT_NAMESPACE}/{platforms.NODES[k].name}'
            nodes[k] = LifecycleClient(node, fqn, spin_until)
            nodes[k].wait(180)
        wait_for(lambda: False, 3.0)
        res['rss_mb']['unconfigured (start)'] = mb()
        log('lifecycle: configure ...')
        t0 = time.monotonic()
        all_('configure')
        res['configure_s'] = time.monotonic() - t0
        res['rss_mb']['inactive (configured)'] = mb()
        activate('after configure')
        spin_until(lambda: False, 5.0)
        res['cpu_pct']['active'] = _cpu_share(ps, min(10.0, window_s))
        res['rss_mb']['active'] = mb()
        log(f'lifecycle: deactivated, {window_s:.0f} s ...')
        all_('deactivate')
        spin_until(lambda: False, 2.0)
        res['cpu_pct']['deactivated'] = _cpu_share(ps, window_s)
        res['rss_mb']['deactivated'] = mb()
        all_('cleanup')
        spin_until(lambda: False, 2.0)
        res['rss_mb']['unconfigured (after cleanup)'] = mb()
        all_('configure')
        res['rss_mb']['inactive (configured again)'] = mb()
        activate('after cleanup + configure')
        res['rss_mb']['active again'] = mb()
        all_('deactivate')
        all_('cleanup')
    finally:
        proc.send_signal(2)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    r = res['rss_mb']
    res['loaded_by_configure_mb'] = r['inactive (configured)'] - r['unconfigured (start)']
    res['freed_by_cleanup_mb'] = r['deactivated'] - r['unconfigured (after cleanup)']
    # the second configure imports nothing: what it adds is the models alone
    res['models_mb'] = r['inactive (configured again)'] - r['unconfigured (after cleanup)']
    return res


def lifecycle_markdown(res: dict) -> str:
    when = time.strftime('%Y-%m-%d')
    lines = [
        f'`make bench` section `bench --lifecycle` ({when}): the four nodes in one '
        '`run --lifecycle --no-autostart` process (desktop.yaml, test camera at 30 fps), '
        'driven over DDS through their lifecycle services.',
        '',
        '| state | RSS (MB) |',
        '|---|---|',
        *(f'| {k} | {v:.0f} |' for k, v in res['rss_mb'].items()),
        '',
        f'- loaded by the first configure: {res["loaded_by_configure_mb"]:.0f} MB (the '
        f'libraries it imports and the models; all four in {res["configure_s"]:.1f} s); the '
        f'models alone (what a configure after a cleanup adds): {res["models_mb"]:.0f} MB; '
        f'freed by cleanup (from deactivated): {res["freed_by_cleanup_mb"]:.0f} MB',
        f'- CPU of the process, % of one core: active {res["cpu_pct"]["active"]:.0f}; '
        f'deactivated {res["cpu_pct"]["deactivated"]:.2f} (over {res["window_s"]:.0f} s)',
        '- activate -> first classification: '
        + '; '.join(f'{k} {v:.2f} s' for k, v in res['first_result_s'].items()),
        '',
    ]
    return '\n'.join(lines)
