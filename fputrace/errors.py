"""Every error a user can hit: one line of text and an exit status, never a traceback."""


class FputraceError(Exception):
    """Base of all user-facing errors. ``str(err)`` is the one line shown to the user."""
    exit_code = 1


class UsageError(FputraceError):
    """Wrong use of the command line (argparse's convention: exit status 2)."""
    exit_code = 2


class FileFormatError(FputraceError):
    """A file that is not a readable fputrace recording / import source. Message names the file."""


class CaptureError(FputraceError):
    """Live capture impossible or failed: no privileges, no BPF, no usable attach point."""


class LoadError(CaptureError):
    """The kernel (or bcc's compiler) refused the BPF program. ``str()`` is the one line;
    ``log`` is everything bcc, clang and the verifier said (printed with -v/--verbose)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log
