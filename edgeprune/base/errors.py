"""Typed errors. Every error a user can cause derives from EdgepruneError.

The CLI turns an EdgepruneError into one line on stderr and exit code 2:
messages therefore carry the offending value and, where there is one, the remedy.
"""

from __future__ import annotations


class EdgepruneError(Exception):
    """Base class: bad input or an unusable artifact. Exit code 2 in the CLI."""

    exit_code = 2


class SpecError(EdgepruneError, ValueError):
    """An ArchSpec that cannot describe a working model (names the layer and field)."""


class CheckpointError(EdgepruneError):
    """A checkpoint directory is missing, incomplete or corrupt."""


class UnsupportedArchitecture(EdgepruneError):
    """The checkpoint is a model family edgeprune does not handle (e.g. GPT-2)."""


class DataError(EdgepruneError):
    """Training / calibration / evaluation data missing or unusable."""


class PruneError(EdgepruneError):
    """A pruning request that cannot be met (bad ratio, unknown method, target too small)."""


class TrainError(EdgepruneError):
    """A training request that cannot be met (no data, bad token count, mismatched teacher)."""


class ResumeMismatch(TrainError):
    """A resume directory holds checkpoints of another run (other model, data or settings).
    Callers that own the directory (ship, incremental stages) catch it to start over."""


class ExportError(EdgepruneError):
    """An export that could not be written or reloaded."""


class FidelityError(ExportError):
    """An export reloads but its logits differ from PyTorch beyond the preset's tolerance."""


class DeviceError(EdgepruneError):
    """Unknown device name or an invalid device profile file."""


class RemoteError(EdgepruneError):
    """A remote target (ssh / adb) is unreachable or a command on it failed."""


class BenchError(EdgepruneError):
    """A benchmark run could not be performed."""


class OutputError(EdgepruneError):
    """An output path edgeprune may not write: a folder or file the user made, `.`, or one in use
    by another run (edgeprune/base/outdir.py)."""


class CacheError(EdgepruneError):
    """The cache folder ($EDGEPRUNE_CACHE, edgeprune/base/paths.py) cannot be created or written."""


class ChatTemplateError(EdgepruneError):
    """A model's chat template that raises, or that exceeds its render budget (time, output, the
    size of a value it builds): names the template's source and the limit."""
