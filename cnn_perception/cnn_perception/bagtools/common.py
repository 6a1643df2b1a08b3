"""What the bag tools share: storage choices."""

STORAGE = ('mcap', 'sqlite3')
