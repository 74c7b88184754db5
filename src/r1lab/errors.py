"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a malformed JSONL line, an unknown config key, an
impossible value) raises `UserError` with a one-line message naming the file, line or field and
what was expected. The CLI turns it into `r1lab: error: <message>` and exit status 2; everything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: reported in one line, exit status 2."""
