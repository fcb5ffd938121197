"""The errors nudge raises on purpose, in one hierarchy.

`UserError` is the branch a person running nudge can fix (a bad config file,
a bad argument or event file, a broker that does not match the settings, state
that needs migrating): the CLI prints its message in one line, without a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class NudgeError(Exception):
    """Base of every error nudge raises on purpose."""


class UserError(NudgeError):
    """Something the person running nudge can fix; the message says what."""
