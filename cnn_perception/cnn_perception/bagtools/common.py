"""What the bag tools share: storage choices and a clean stop on SIGINT / SIGTERM."""

from cnn_perception.runtime import stop_on_signals  # noqa: F401  (the bag tools' import)

STORAGE = ('mcap', 'sqlite3')
