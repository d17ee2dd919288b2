"""The errors audioclf raises for things a user can fix: a bad file, key, archive or store.

Every kind derives from ``AudioclfError``, which the CLI turns into one line naming what
failed and exit status 2; any other exception is a bug in audioclf, printed with its
traceback (exit 1). Each kind also derives from the built-in exception it refines
(``ValueError`` for bad content, ``OSError`` for a failed download, ``ImportError`` for an
extra that is not installed), so code that caught the built-in before keeps working.
"""

from __future__ import annotations


class AudioclfError(Exception):
    """Base of every user-facing audioclf error; the message names the file or key."""


class ConfigError(AudioclfError, ValueError):
    """A config key or value is wrong; the message names the key and what is allowed."""


class DataError(AudioclfError, ValueError):
    """A dataset, its metadata or an archive holds something audioclf will not use."""


class ArchiveError(DataError):
    """An archive is unreadable, holds an unsafe member, or exceeds an extraction limit."""


class StoreError(DataError):
    """A packed store is damaged or inconsistent; the message names the file and the fault."""


class AudioError(AudioclfError, ValueError):
    """Audio could not be decoded, or decodes to samples no model should see."""


class CheckpointError(AudioclfError, ValueError):
    """A checkpoint is unreadable, or needs code to run to be read (refused)."""


class DownloadError(AudioclfError, OSError):
    """A download failed; the message names the URL and the reason."""


class TrainingError(AudioclfError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step and a likely cause."""


class MissingDependencyError(AudioclfError, ImportError):
    """An optional extra a feature needs is not installed; the message says what to install."""
