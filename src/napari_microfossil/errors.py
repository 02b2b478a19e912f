"""The one exception type for mistakes the user can fix."""


class InputError(ValueError):
    """Bad input from the user: a file, a folder or an option.

    The message is one line that names the file or parameter, says what was expected
    and what came. The command line prints it without a traceback and exits with 2.
    """
