"""The voice harness: stands in for Discord at the network edge, and nowhere else.

Modules, from the outside in:

* :mod:`harness.cli` - ``python -m harness simulate|recover`` (the stable contract);
* :mod:`harness.simulate` - one meeting start → stream → stop → promote, and recovery;
* :mod:`harness.network` - :class:`FakeVoiceNetwork`: a fake voice channel, its
  members' clients, the impaired path and the bot's :class:`FakeVoiceLink`
  (``network.connector`` is the cog's ``VoiceConnector``);
* :mod:`harness.scenario`, :mod:`harness.sources`, :mod:`harness.impairments`,
  :mod:`harness.clock` - who talks when, what they say, what the network does to it,
  and the simulated clock;
* :mod:`harness.wire` - Opus, DAVE and transport encryption, as Discord sends them.

The common names are importable from here lazily (``from harness import
FakeVoiceNetwork``) so that ``import harness`` alone stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FakeVoiceNetwork": "harness.network",
    "FakeVoiceLink": "harness.network",
    "OpusCache": "harness.network",
    "SimulatedClock": "harness.clock",
    "WallClock": "harness.clock",
    "Impairments": "harness.impairments",
    "SpeakerPlan": "harness.scenario",
    "Source": "harness.sources",
    "Activity": "harness.sources",
    "SimulateOptions": "harness.simulate",
    "simulate": "harness.simulate",
    "recover": "harness.simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
