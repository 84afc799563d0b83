"""The exceptions lungfake raises on purpose.

Callers (the CLI, the app) catch ``LungfakeError`` and show its message; every
message says what went wrong and what to do, and never contains a traceback.
"""


class LungfakeError(Exception):
    """Base of every error lungfake raises deliberately."""


class DatasetError(LungfakeError):
    """The data root is missing, empty or laid out wrongly."""


class ImageDecodeError(LungfakeError):
    """An input file is not an image lungfake can read."""


class ModelIntegrityError(LungfakeError):
    """A model file is missing, or its sha256 does not match the registry."""


class RegistryError(LungfakeError):
    """weights/registry.json is missing or malformed, or lacks an entry asked for."""


class MetricsError(LungfakeError):
    """A metrics file under weights/metrics is malformed."""


class SplitError(LungfakeError):
    """A split CSV is missing, malformed, or not the one a result was computed on."""


class TrainingError(LungfakeError):
    """A training run cannot start as asked (e.g. the served model to continue from does not fit the recipe)."""


class UploadLimitError(LungfakeError):
    """An upload exceeds a stated limit (tiles in a batch, a zip's unpacked size) or a zip cannot be opened."""


class ScoringProcessError(LungfakeError):
    """The process that holds the app's models stopped, or failed on a request."""


class SlideReadError(LungfakeError):
    """A whole-slide file cannot be opened: not a slide, damaged, a format the reader lacks, or no tissue on it."""


class SlideScaleError(LungfakeError):
    """A slide states no microns per pixel, or one no microscope gives: the user must state it (--mpp)."""


class SlideTooLongError(LungfakeError):
    """Mapping a slide would take longer than the stated limit (the estimate is in the message)."""
