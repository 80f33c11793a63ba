"""A fake Discord voice server for discord.py's real voice client (see :mod:`.server`)."""

from .call import FakeCall
from .client import offline_client
from .gateway import FakeMainGateway, voice_read_timeout
from .server import FakeDiscordVoiceServer

__all__ = ["FakeCall", "FakeDiscordVoiceServer", "FakeMainGateway", "offline_client", "voice_read_timeout"]
