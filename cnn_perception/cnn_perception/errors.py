"""Errors an operator can fix (bad file, bad argument): shown as one line, never a traceback."""


class UserError(Exception):
    """Base class: the message names the thing at fault and what to do about it."""


class ModelFileError(UserError):
    """A model, checkpoint or ONNX file is missing, truncated or of the wrong kind."""


class SourceError(UserError):
    """A camera source string cannot be parsed or opened."""


class BagError(UserError):
    """A rosbag2 directory is missing, incomplete or corrupt."""


class SourceLost(Exception):
    """The source stopped delivering frames (unplugged, deleted, stream broke)."""


class SourceEnded(Exception):
    """A finite source (file, folder, bag) reached its end and loop is off."""
