"""The cog's listeners: discord.py's events and hooks (``dpy.py``) and Red's (``red.py``).

Each is a mixin over ``core.abc.MixinMeta`` that turns an event into one call on the
service; what happens then is decided in ``core/``.
"""

from .dpy import DiscordEvents
from .red import RedEvents

__all__ = ["DiscordEvents", "RedEvents"]
