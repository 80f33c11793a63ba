"""User input shown back in a reply: short, on one line, and unable to leave its code span.

Replies quote what a member typed (``No recording `3f2a…` in this server.``). Quoted
raw, a 1,980-character argument makes a reply over Discord's 2,000 characters, which
Discord rejects (the member sees nothing), and a backtick in it closes the code span,
so that ``a`@everyone`b`` turns into a live mention and stray formatting. Every echo
goes through :func:`echo`: whitespace folded to single spaces, backticks replaced by a
look-alike that Markdown ignores (U+02CB), and at most ``limit`` characters.
"""

from __future__ import annotations

__all__ = ["ECHO_LIMIT", "echo"]

#: Characters of user input a reply quotes: an id is 16, a word fits easily.
ECHO_LIMIT = 40

_LOOKALIKE = "\u02cb"  # ˋ MODIFIER LETTER GRAVE ACCENT


def echo(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` fit to sit between backticks in a reply."""
    folded = " ".join(str(text).split()).replace("`", _LOOKALIKE)
    if len(folded) > limit:
        folded = folded[: limit - 1].rstrip() + "…"
    return folded or " "
