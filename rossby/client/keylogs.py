"""Key log checks: every key this device trusts is vouched for by its box's log.

Every RequestKey answer carries the head of the box's key log
(docs/client.md, "Key log"). The client keeps, per box, the chain state it
verified last (``ClientState.logs``). A head below it is a rollback, the
same seq with another hash a fork, and new entries must link to it, verify
(hash, signatures against the key set at each point) and replay to exactly
the devices the keystore lists. Any failure is a ``KeyLogError`` and none of
the box's keys are used; a key change the log does explain is reported as
a ``KeyChange`` by the directory, which asks here first.
"""

from __future__ import annotations

import uuid

from rossby.client.errors import KeyLogError
from rossby.client.models import KeyLogView
from rossby.client.session import Session
from rossby.client.state import PinnedDevice
from rossby.client.wire import log_entry, record
from rossby.crypto.keylog import ChainState, InvalidKeyLog, LogEntry, replay
from rossby.v1 import rossby_pb2 as pb

KEY_LOG_PAGE = 500


class LogMismatch(Exception):
    """The verified log and the keystore's device list disagree (maybe a
    change landed between the two reads; the caller asks once more)."""


class KeyLogs:
    """Reads and verifies key logs through the session; pins what verified."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def entries(self, box_id: uuid.UUID, after: int, through: int) -> list[LogEntry]:
        """Entries (after, through], page by page."""
        out: list[LogEntry] = []
        while after < through:
            page = await self._session.call(
                "KeyLog",
                pb.KeyLogRequest(box_id=str(box_id), after_seq=after, limit=KEY_LOG_PAGE),
                pb.KeyLogResponse,
            )
            fresh = [log_entry(box_id, e) for e in page.entries if after < e.seq <= through]
            if not fresh:
                break
            out.extend(fresh)
            after = fresh[-1].seq
        if after != through:
            raise KeyLogError(f"the key log of box {box_id} ends before its announced head")
        return out

    async def check(
        self,
        box_id: uuid.UUID,
        reply: pb.RequestKeyResponse,
        devices: dict[uuid.UUID, PinnedDevice],
    ) -> None:
        """Verify the box's key log against the last one seen and the device
        list; pin it. ``KeyLogError`` for a broken chain, ``LogMismatch``
        when the log and the list disagree."""
        seq, head = int(reply.key_log.seq), bytes(reply.key_log.hash)
        pinned = self._session.state.logs.get(box_id)
        if pinned is not None:
            if seq < pinned.seq:
                raise KeyLogError(
                    f"the key log of box {box_id} was rolled back "
                    f"(now entry {seq}, this device saw entry {pinned.seq})"
                )
            if seq == pinned.seq and head != pinned.head:
                raise KeyLogError(
                    f"the key log of box {box_id} forked at entry {seq} "
                    "(same position, different history)"
                )
        if seq == 0:
            return  # a box from before key logs: trust on first use only
        if pinned is not None and seq == pinned.seq:
            state = pinned
        else:
            base = pinned or ChainState(box_id)
            entries = await self.entries(box_id, base.seq, seq)
            try:
                state = replay(base, entries)
            except InvalidKeyLog as exc:
                raise KeyLogError(f"box {box_id}: {exc.reason}") from None
            if state.head != head:
                raise KeyLogError(f"the key log of box {box_id} does not match its head")
        listed = {d: (p.encryption_key, p.signing_key) for d, p in devices.items()}
        if listed != state.devices:
            raise LogMismatch
        self._session.state.logs[box_id] = state

    async def view(self, box_id: uuid.UUID, contact: str | None) -> KeyLogView:
        """The whole log of a box just resolved, replayed from its first
        entry and checked to end at the head this device pinned."""
        pinned = self._session.state.logs.get(box_id)
        if pinned is None:
            return KeyLogView(box_id, contact, ())
        entries = await self.entries(box_id, 0, pinned.seq)
        try:
            full = replay(ChainState(box_id), entries)
        except InvalidKeyLog as exc:
            raise KeyLogError(f"box {box_id}: {exc.reason}") from None
        if full.head != pinned.head:
            raise KeyLogError(f"the key log of box {box_id} forked from the one seen before")
        return KeyLogView(box_id, contact, tuple(record(e) for e in entries))


__all__ = ["KEY_LOG_PAGE", "KeyLogs", "LogMismatch"]
