"""The one exception type whose message is shown to the user as it is."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Something the user can fix; ``str(exc)`` is one friendly line for Discord.

    Raised before anything is changed, so catching it never leaves half-done work.
    """
