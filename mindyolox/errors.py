"""User-facing errors: each carries one line that names the file, key or record at fault.

CLIs catch ``MindYOLOXError`` and print ``error: <message>`` (no traceback), exit code 2.
"""


class MindYOLOXError(Exception):
    """Base class of errors caused by user input (config, weights, data), not by bugs."""


class ConfigError(MindYOLOXError):
    """A recipe is malformed, names an unknown key, has a wrong type or a missing __base__."""


class WeightsError(MindYOLOXError):
    """A weights file is missing, unreadable or does not fit the model."""


class DataError(MindYOLOXError):
    """A dataset, annotation file or image cannot be used."""
