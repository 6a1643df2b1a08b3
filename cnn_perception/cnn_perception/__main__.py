"""`python -m cnn_perception`: the command line (see cli.py)."""

import sys

from cnn_perception.cli import main

sys.exit(main())
