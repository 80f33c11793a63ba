"""Who of a meeting's members may be recorded: the per-frame consent gate.

A guild records in one of two consent modes:

* ``notice``: everyone in the channel is recorded unless they opted out; the bot shows
  that it records (the "[REC]" indicator) and tells each member who joins;
* ``optin``: only members who agreed are recorded, for this meeting (a button on the
  start message, ``[p]record optin``) or always (the other button,
  ``[p]record optin always``).

The decision is made for every decoded frame on the voice receive thread, before the
pipeline sees it (``RecordingSession.feed``'s ``accept_user``), exactly where opt-outs
are refused: audio of a member who has not agreed never reaches a buffer, a chunk file
or the mix. So it must be one set lookup and never block: the agreed set is a
``frozenset`` replaced whole (one atomic assignment) when someone agrees.

This module imports nothing of Red or discord.py: the harness builds the same gate
for ``python -m harness simulate --consent optin --agree NAME``.
"""

from __future__ import annotations

import enum
from typing import Callable, Iterable, Optional

__all__ = ["ConsentGate", "ConsentMode", "parse_consent_mode"]


class ConsentMode(str, enum.Enum):
    NOTICE = "notice"
    OPTIN = "optin"


def parse_consent_mode(text: str) -> Optional[ConsentMode]:
    """``notice`` / ``optin`` (and a few spellings of them); None if it is neither."""
    word = text.strip().lower().replace("-", "").replace("_", "")
    if word in ("notice", "notify", "announce", "optout"):
        return ConsentMode.NOTICE
    if word in ("optin", "consent", "agree"):
        return ConsentMode.OPTIN
    return None


class ConsentGate:
    """One meeting's consent: its mode, who agreed for it, and who agreed for good.

    ``always`` answers whether a member agreed to every recording in the guild (the
    cog's Config, held in memory like the opt-outs); it is called on the receive thread
    and must be as cheap as a set lookup.
    """

    def __init__(self, mode: ConsentMode = ConsentMode.NOTICE, *, agreed: Iterable[int] = (),
                 always: Optional[Callable[[int], bool]] = None) -> None:
        self.mode = ConsentMode(mode)
        self._agreed: frozenset[int] = frozenset(int(u) for u in agreed)
        self._always = always

    @property
    def optin(self) -> bool:
        return self.mode is ConsentMode.OPTIN

    @property
    def agreed(self) -> frozenset[int]:
        """Members who agreed for this meeting (not counting the "always" ones)."""
        return self._agreed

    def accepts(self, user_id: int) -> bool:
        """Whether ``user_id``'s audio may be recorded now (receive thread: O(1), never raises)."""
        if self.mode is ConsentMode.NOTICE:
            return True
        if user_id in self._agreed:
            return True
        return self._always is not None and self._always(user_id)

    def agree(self, user_id: int) -> bool:
        """Record ``user_id``'s agreement for this meeting; False if they had agreed already."""
        if user_id in self._agreed:
            return False
        self._agreed = self._agreed | {int(user_id)}  # one swap: the receive thread sees old or new
        return True

    def withdraw(self, user_id: int) -> None:
        """``user_id`` takes back their agreement for this meeting (an opt-out, an erasure)."""
        if user_id in self._agreed:
            self._agreed = self._agreed - {int(user_id)}
