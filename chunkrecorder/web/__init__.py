"""Download links: the opt-in web server, its capability links, and what it serves.

Plain classes, usable without Red: the cog starts one server with the cog
(``core/weblinks.py``) and the harness one per ``simulate --web`` run, both over a
``Recorder``. ``harness`` imports this package; nothing here imports the cog layer.
"""

from __future__ import annotations

from .catalog import FORMATS, Catalog, Format, Names, parse_format
from .links import LinkRefused, LinkSigner, key_id, new_secret
from .server import WebServer, WebServerError

__all__ = [
    "Catalog",
    "FORMATS",
    "Format",
    "LinkRefused",
    "LinkSigner",
    "Names",
    "WebServer",
    "WebServerError",
    "key_id",
    "new_secret",
    "parse_format",
]
