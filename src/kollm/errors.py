"""User-facing errors.

Anything the user can fix (a missing file, a bad recipe key, an empty corpus) is raised as
`KollmError` with a message that names the problem and the fix. The CLI prints it on one line
and exits with status 2; it never shows a traceback for these.
"""


class KollmError(Exception):
    """A problem with the user's input, explained in plain words."""
