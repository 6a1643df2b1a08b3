"""The Ray side of `fleet.py`: start or join Ray, one actor per worker, bags as tasks.

Kept apart so that nothing else imports Ray: a robot's install has none, and several bags
without it say in one line what to install.
"""

import os
import sys
import time

from cnn_perception.errors import UserError

OBJECT_STORE_BYTES = 100 * 1024 * 1024  # results are small dicts; frames never go through it
MAX_RETRIES = 2  # a bag whose worker died is tried at most 3 times


def start_ray(workers: int, address: str | None, log) -> tuple[bool, float]:
    """Join `address` (or RAY_ADDRESS), else start a local Ray; (started here, seconds)."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            'several bags run on Ray, which is not installed: pip install ray==2.60.0 '
            '(`make setup` installs it; one bag needs no Ray)'
        ) from exc
    t0 = time.monotonic()
    if ray.is_initialized():
        return False, 0.0
    kw = dict(include_dashboard=False, logging_level='ERROR', log_to_driver=False)
    address = address or os.environ.get('RAY_ADDRESS')
    if address:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f'cannot join the Ray cluster at {address}: {exc}') from exc
        log(f'fleet: joined the Ray cluster at {address}')
        return False, time.monotonic() - t0
    ray.init(num_cpus=workers, object_store_memory=OBJECT_STORE_BYTES, **kw)
    return True, time.monotonic() - t0


def dispatch(todo, out, job, workers, address, res, log, worker_cls) -> None:
    """Run `todo` [(bag, flight, fingerprint)] on Ray actors; fill `res` (done / failed)."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    started, res.ray_start_s = start_ray(workers, address, log)  # says if Ray is missing
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    actor_cls = ray.remote(num_cpus=1, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(
        worker_cls
    )
    queue = list(todo)
    pending: dict = {}  # future -> (actor, flight)
    t0 = time.monotonic()
    bar = tqdm(total=len(todo) + len(res.kept), initial=len(res.kept), unit='bag',
               desc='fleet', file=sys.stderr)  # fmt: skip

    def submit(actor) -> None:
        bag, flight, fp = queue.pop(0)
        pending[actor.run.remote(bag, str(out), flight, fp)] = (actor, flight)

    def show() -> None:
        fps = sum(res.done[f]['frames'] for f in res.done if f not in res.kept)
        fps /= max(time.monotonic() - t0, 1e-9)
        bar.set_postfix_str(f'done {len(res.done)}, failed {len(res.failed)}, running '
                            f'{len(pending)}, {fps:.1f} frames/s')  # fmt: skip

    job = {**job, 'num_threads': 1}  # Ray gives each actor one CPU
    actors = [actor_cls.remote(job) for _ in range(min(workers, len(queue)))]
    try:
        for actor in actors:
            submit(actor)
        show()
        while pending:
            (fut,), _ = ray.wait(list(pending), num_returns=1)
            actor, flight = pending.pop(fut)
            try:
                res.done[flight] = ray.get(fut)
            except RayTaskError as exc:  # the bag itself: not retried
                cause = exc.cause if getattr(exc, 'cause', None) is not None else exc
                text = str(cause).strip().splitlines()
                res.failed[flight] = f'{type(cause).__name__}: {text[0] if text else ""}'[:300]
            except (RayActorError, WorkerCrashedError):
                res.failed[flight] = (
                    f'its worker died {MAX_RETRIES + 1} times (killed or out of memory)'
                )
                actor = actor_cls.remote(job)  # that one is gone for good
            bar.update(1)
            if queue:
                submit(actor)
            show()
    except KeyboardInterrupt:
        res.interrupted = True
        log('\nfleet: interrupted; complete flights are kept, a rerun does the rest')
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
