"""The meeting page: every track with its speaker, length, size, a player and a download button.

Server-rendered HTML with no script, no framework and nothing loaded from elsewhere
(the Content-Security-Policy the server sends forbids it), so the page works in any
browser and leaks the link to nobody: every name in it is HTML-escaped, and every
link is relative to the page, which sits under the link's own path.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

from ..i18n import _

__all__ = ["TrackRow", "meeting_page"]


@dataclass(frozen=True, slots=True)
class TrackRow:
    speaker: str
    duration: str
    size: str
    #: Relative URL of the track (the player adds ``?play=1``).
    href: str


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%}
td,th{padding:.5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
audio{width:16rem}a.button{padding:.3rem .7rem;border:1px solid #888;border-radius:.3rem;text-decoration:none}
.formats a,.formats strong{margin-right:.8rem}.note{color:#666;font-size:.9rem}
"""


def meeting_page(*, title: str, started: str, length: str, tracks: Sequence[TrackRow], fmt: str,
                 formats: Sequence[str], zip_href: str, expires: str) -> str:
    """The whole page; every argument is plain text (escaped here)."""
    e = html.escape
    switch = []
    for f in formats:
        label = e(f.upper() if f == "mp3" else f.capitalize())
        switch.append(f"<strong>{label}</strong>" if f == fmt else f'<a href="?format={e(f)}">{label}</a>')
    rows = []
    for t in tracks:
        rows.append(
            "<tr>"
            f"<td>{e(t.speaker)}</td><td>{e(t.duration)}</td><td>{e(t.size)}</td>"
            f'<td><audio controls preload="none" src="{e(t.href)}?play=1"></audio></td>'
            f'<td><a class="button" href="{e(t.href)}" download>{e(_("Download"))}</a></td>'
            "</tr>"
        )
    note = ""
    if fmt == "opus":
        wait = _("Opus files are made when first asked for: the first download of a long track can take a "
                 "minute to start.")
        note = f'<p class="note">{e(wait)}</p>'
    return "".join([
        "<!doctype html>",
        '<html><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta name="robots" content="noindex,nofollow">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(_('Started {started}, {length} long.').format(started=started, length=length))}</p>",
        f'<p class="formats">{e(_("Format:"))} {" ".join(switch)}</p>',
        "<table><thead><tr>",
        f"<th>{e(_('Speaker'))}</th><th>{e(_('Length'))}</th><th>{e(_('Size'))}</th><th></th><th></th>",
        "</tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        f'<p><a class="button" href="{e(zip_href)}">{e(_("Download all (zip)"))}</a></p>',
        note,
        f'<p class="note">{e(_("This page and its links stop working {expires}.").format(expires=expires))}</p>',
        "</body></html>",
    ])
