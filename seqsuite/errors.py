"""Errors a user can cause. The CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""
