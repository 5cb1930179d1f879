"""The errors imgsim reports to users as a clear message rather than a traceback."""


class ImgsimError(Exception):
    """Base of every error whose message tells the user what is wrong and how to fix it."""


class DatasetError(ImgsimError, ValueError):
    """The folder cannot be used as a training set; the message says why and how to fix it."""


class UnreadableImageError(ImgsimError, ValueError):
    """A file that is not a decodable image (corrupt, truncated, unsupported or too large)."""


class ConfigError(ImgsimError, ValueError):
    """A config file or value that cannot be used."""


class ModelNotLoadedError(ImgsimError, RuntimeError):
    """No usable model file."""


class EmbeddingsNotLoadedError(ImgsimError, RuntimeError):
    """No usable embeddings on disk."""


class NotReadyError(ImgsimError, RuntimeError):
    """The searcher has no model or no embeddings; the message is the original's advice."""


class UnsafePathError(ImgsimError, ValueError):
    """A name that leads outside the data folder (absolute, '..', or through a symlink)."""


class TrashError(ImgsimError, ValueError):
    """A trash operation that cannot be done (nothing by that name, the target exists)."""


class OnnxError(ImgsimError, RuntimeError):
    """ONNX export or onnxruntime cannot be used (package missing, foreign or stale file)."""


class DeviceError(ImgsimError, RuntimeError):
    """A requested device (cuda, mps) that this machine or this torch build does not have."""


class CheckpointError(ImgsimError, RuntimeError):
    """A run that cannot be resumed as asked; the message names what differs."""


class RenameError(ImgsimError):
    """A rename that cannot go ahead, or went wrong and was rolled back; printed as it is."""
