"""Sub-commands of `python -m cnn_perception`; one module each, registered in cli.py."""
