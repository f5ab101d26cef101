"""Errors a user can cause and act on.

A `UserError` is printed by the CLI as one line (no traceback) and exits with code 2.
"""


class UserError(Exception):
    """Bad input: the message says what was wrong and what to do."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid configuration key, value or combination."""


class NotApplicableError(ConfigError):
    """A method cannot work for this teacher / student pair by its construction (e.g. it needs feature maps the
    student has not, or stages of equal width); smoke grids record such a cell as not applicable."""


class DataNotFoundError(UserError):
    """A dataset could not be found where kdforge looked."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupted, foreign or unsafe to load."""


class FolderInUseError(UserError):
    """Another process holds the folder's lock (a run folder, or a benchmark's root): two writers never share one."""


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss term."""


class PeerFailedError(UserError):
    """Another process of a multi-process run died; this one stopped, its last checkpoint intact."""

    exit_code = 1


class TrainingStopped(UserError):
    """The run was asked to stop (SIGTERM, SIGINT) and left a checkpoint to resume from."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class SittingOver(UserError):
    """Runs were left unstarted because they could not finish by the sitting's end (`--finish-by`); the same
    command run again later continues the suite. Its exit code tells a campaign script to stop there."""

    exit_code = 3
