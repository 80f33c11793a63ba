"""Red's converters for ``[p]recordingset``'s numbers, with the settings' own refusals.

``commands.Range`` parses and bounds a plain number, and Red's timedelta converter
(``get_timedelta_converter``) reads a duration the way every Red command does (``30d``,
``4h``, ``1h30m``). What is added here is only the wording: a refused value gets the
setting's one sentence (``core.settings.NumberSetting``) instead of the library's
generic one, and the command runs only with a value known to be good, so nothing is
written otherwise. A bare number keeps the unit the setting always had
(``retention 30`` is 30 days, ``flush 2.5`` is 2.5 seconds).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from discord.ext.commands import Context as DPYContext
from redbot.core import commands
from redbot.core.commands.converter import get_timedelta_converter

from ..core.errors import ValueRefused
from ..core.settings import NumberSetting

__all__ = ["DurationSetting", "RangeSetting"]


class RangeSetting(commands.Converter[float]):
    """``commands.Range[int or float, low, high]`` of one setting, refusing in its words."""

    def __init__(self, setting: NumberSetting) -> None:
        self.setting = setting
        # Typed as Annotated[...] for type checkers; at run time a Range converter.
        self.range: Any = (
            commands.Range[int, int(setting.low), int(setting.high)] if setting.integer
            else commands.Range[float, float(setting.low), float(setting.high)]
        )

    async def convert(self, ctx: DPYContext[Any], argument: str) -> float:
        try:
            number: float = await self.range.convert(ctx, argument.strip())
        except commands.RangeError as exc:
            value = float(exc.value)
            if math.isinf(value):
                raise ValueRefused(self.setting.not_a_number(argument)) from None
            raise ValueRefused(self.setting.out_of_range(value)) from None
        except commands.BadArgument:
            raise ValueRefused(self.setting.not_a_number(argument)) from None
        if math.isnan(number) or math.isinf(number):
            raise ValueRefused(self.setting.not_a_number(argument))  # Range lets NaN through
        return number


class DurationSetting(commands.Converter[float]):
    """A duration setting: a plain number in its old unit (``RangeSetting``), or any
    duration Red's timedelta converter reads, in the setting's unit."""

    def __init__(self, setting: NumberSetting, *, allowed_units: list[str]) -> None:
        self.setting = setting
        self.plain = RangeSetting(setting)
        # No bounds for Red's parser (negative durations included): the setting says what
        # is allowed, in its own words. Typed as type[timedelta] for type checkers.
        self.timedelta: Any = get_timedelta_converter(minimum=dt.timedelta.min, allowed_units=allowed_units)

    async def convert(self, ctx: DPYContext[Any], argument: str) -> float:
        text = argument.strip()
        try:
            float(text)
        except ValueError:
            pass
        else:
            return await self.plain.convert(ctx, text)
        try:
            delta: dt.timedelta = await self.timedelta().convert(ctx, text)
        except commands.BadArgument as exc:
            if str(exc):  # Red's own sentence: a unit this setting does not take
                raise
            raise ValueRefused(self.setting.not_a_number(argument)) from None
        value = delta.total_seconds() / self.setting.unit_s
        if self.setting.integer and not math.isclose(value, round(value), abs_tol=1e-9):
            raise ValueRefused(self.setting.not_a_number(argument))
        if not self.setting.low <= value <= self.setting.high:
            raise ValueRefused(self.setting.out_of_range(value))
        return round(value) if self.setting.integer else value
