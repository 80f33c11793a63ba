"""The harness's sending side of the voice wire (mirror of ``chunkrecorder.voice``).

Real DAVE: :class:`WireGroup` builds a genuine ``davey`` MLS group locally (the
harness signs the voice server's Add proposals, see :mod:`.mls`), so the receive
side's DAVE step is the production ``DaveyDecryptor`` over a real session in every
test. ``WireGroup(dave=False)`` gives a channel without end-to-end encryption.
"""

from .dave import DaveGroup
from .group import Corruption, SpeakerWire, WireGroup
from .mls import ExternalSender
from .packets import RtpSealer

__all__ = ["Corruption", "DaveGroup", "ExternalSender", "RtpSealer", "SpeakerWire", "WireGroup"]
