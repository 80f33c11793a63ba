"""Red's events: a member's data deletion request."""

from __future__ import annotations

from ..core.abc import MixinMeta
from ..core.service import RequestType

__all__ = ["RedEvents"]


class RedEvents(MixinMeta):
    async def red_delete_data_for_user(self, *, requester: RequestType, user_id: int) -> None:
        """Delete a member's per-user recordings, chunks and (mostly) opt-out choice.

        The rule, and why the mixed files stay, is in ``RecordingService.erase_user``.
        """
        await self.service.erase_user(user_id, requester=requester)
