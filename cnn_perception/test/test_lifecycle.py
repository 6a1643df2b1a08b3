"""Managed (lifecycle) nodes over real DDS: a client in this process drives a node process.

The client calls the standard lifecycle services, as `ros2 lifecycle set` and nav2's
lifecycle manager do (`tools/lifecycle.py`).
"""

from conftest import run_cli, stop_process, wait_for_line

from cnn_perception import contract, platforms
from cnn_perception.core.defects.builtin import DEFAULT_DEFECT_MODEL
from cnn_perception.tools.lifecycle import LifecycleClient


def _client(probe, key: str) -> LifecycleClient:
    fqn = f'{platforms.DEFAULT_NAMESPACE}/{platforms.NODES[key].name}'
    client = LifecycleClient(probe.node, fqn, probe.spin_until)
    client.wait(120)
    return client


def test_two_full_cycles_with_results_only_while_active(probe):
    from cnn_perception_msgs.msg import Classification

    from cnn_perception.nodes.common import RESULT_QOS

    keys = ('camera', 'classifier')
    proc = run_cli(
        'run', '--nodes', ','.join(keys), '--source', 'test:', '--lifecycle', '--no-autostart'
    )
    try:
        got = probe.listen(Classification, contract.CLASSIFICATION.full(), RESULT_QOS)
        nodes = {k: _client(probe, k) for k in keys}
        for cycle in range(2):
            assert {n.state() for n in nodes.values()} == {'unconfigured'}, cycle
            for n in nodes.values():
                assert n.change('configure'), (cycle, n.fqn)
            assert {n.state() for n in nodes.values()} == {'inactive'}
            probe.spin_for(2.0)
            assert not got, 'results while inactive'
            for key in ('classifier', 'camera'):
                assert nodes[key].change('activate'), (cycle, key)
            assert probe.spin_until(lambda: len(got) >= 5, 60), (cycle, len(got))
            assert {n.state() for n in nodes.values()} == {'active'}
            for key in ('camera', 'classifier'):
                assert nodes[key].change('deactivate'), (cycle, key)
            probe.spin_for(0.5)  # what was in flight before the deactivate
            n_then = len(got)
            probe.spin_for(3.0)
            assert len(got) == n_then, 'results after deactivate'
            assert 'activate' in nodes['classifier'].available()
            for n in nodes.values():
                assert n.change('cleanup'), (cycle, n.fqn)
            got.clear()
        for n in nodes.values():
            assert n.change('shutdown'), n.fqn
            assert n.state() == 'finalized'
        assert proc.poll() is None, 'the process ended with its nodes finalized'
    finally:
        out = stop_process(proc)
    assert 'Traceback' not in out, out


def test_a_bad_model_fails_configure_and_a_good_one_then_works(probe, tmp_path):
    # autostart: the first configure is the node's own, at start-up
    params = tmp_path / 'bad.yaml'
    params.write_text(
        '/**/defect_detector:\n  ros__parameters:\n    model: /nonexistent/wall.npz\n'
    )
    proc = run_cli(
        'run', '--nodes', 'defects', '--params-file', str(params), '--lifecycle'
    )  # fmt: skip
    try:
        node = _client(probe, 'defects')
        assert wait_for_line(proc, 'configure failed', 60), ''.join(proc.lines)
        assert node.state() == 'unconfigured'
        assert proc.poll() is None, 'a failed configure must leave the process alive'
        # a restart-only parameter may change while unconfigured (and is checked)
        ok, why = node.set_param('max_rate_hz', -1.0)
        assert not ok and 'range' in why, why
        ok, why = node.set_param('model', DEFAULT_DEFECT_MODEL)
        assert ok, why
        assert node.change('configure')
        assert node.change('activate')
        assert node.state() == 'active'
        # once configured, restart-only parameters are refused again
        ok, why = node.set_param('model', '/nonexistent/wall.npz')
        assert not ok and 'restart' in why, why
    finally:
        out = stop_process(proc)
    assert 'nonexistent/wall.npz' in out, out
    assert 'Traceback' not in out, out
