"""The one exception type for mistakes the user can fix."""


class InputError(ValueError):
    """Bad input from the user: a file, a folder or an option.

    The message is one line that names the file or parameter, says what was expected
    and what came. The command line prints it without a traceback and exits with 2.
    """


def os_error_line(exc: OSError) -> str:
    """A fault of the user's machine (a full disk, an unwritable folder, a file gone)
    as one line naming the file: ``"/data/labels.tif: No space left on device"``."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
