"""`run`: start the pipeline (all chosen nodes in one process)."""


def add_parser(sub) -> None:
    from cnn_perception.pipeline import add_arguments

    p = sub.add_parser('run', help='run the nodes in one process (what the launch files start)')
    add_arguments(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from cnn_perception.pipeline import run_from_args

    return run_from_args(args)
