"""One load-generating process: registers its slice of users, runs the mix, drains.

The coordinator (``coordinator.py``) talks to each process through two
multiprocessing queues. The conversation, in order::

    worker -> ("registered", i, {"users": {user: [box ids]}, "failed": n, ...})
    coord  -> ("start", directory {user: [box ids]}, t0 wall clock)
    worker -> ("progress", i, snapshot)            every PROGRESS_EVERY seconds
    worker -> ("sent", i, {"acked": {box: [message ids]}, ...})
    coord  -> ("drain", {box: [message ids]})       what this process's devices must hold
    worker -> ("result", i, {...})
    worker -> ("crashed", i, traceback)            instead, on any unexpected failure
    coord  -> ("abort",)                            at any wait: stop now

Every wait is bounded; a worker that hears nothing within its bound exits.
"""

from __future__ import annotations

import asyncio
import queue
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc

from rossby.loadtest.audit import AuditResult
from rossby.loadtest.codec import PayloadCodec, RandomPayloads, stamped_body
from rossby.loadtest.config import MAX_RATE_LIMIT_WAIT, RATE_LIMIT_WAITS, LoadConfig
from rossby.loadtest.device import SimDevice
from rossby.loadtest.enrol import Enrolment
from rossby.loadtest.realcrypto import RealCrypto
from rossby.loadtest.stats import Recorder
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb

PROGRESS_EVERY: Final = 0.5
MAX_PAGES: Final = 50
"""Fetch pages per fetch+ack operation (bounded; the rest waits for the next one)."""
RETRYABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
UNAVAILABLE_CODE: Final = 14  # google.rpc.Code.UNAVAILABLE in SendResult.code
CODE_NAMES: Final = {code.value[0]: code.name for code in grpc.StatusCode}
SEND_OPS: Final = frozenset({"send", "group"})
CHANNEL_OPTIONS: Final = [
    # A channel per connection: without a local pool, channels to one address
    # share a subchannel, so several channels would still be one TCP connection
    # (and `rossby serve --workers N` balances connections, not calls).
    ("grpc.use_local_subchannel_pool", 1),
    # Reconnect soon after a server restart: gRPC's default back-off grows to
    # minutes, which would turn a two-second outage into a long one.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
DELIVERY: Final = "deliver (send->fetch)"
#: Seconds a subscribe op keeps taking pushes after the stream is live.
SUBSCRIBE_WINDOW: Final = 1.0
"""Pseudo-RPC: time from the sender stamping a message to a fetch returning it."""


class OpFailed(Exception):
    """An operation gave up; ``code`` is the gRPC status name (or exception type)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Aborted(Exception):
    pass


class Worker:
    def __init__(self, index: int, config: LoadConfig, cmd_q: Any, out_q: Any) -> None:
        self.index = index
        self.config = config
        self.cmd_q = cmd_q
        self.out_q = out_q
        users, self.workers, self.rate, self.quota = config.share(index)
        self.users = list(users)
        seed = None if config.seed is None else config.seed * 1009 + index
        self.rng = random.Random(seed)
        self.setup = Recorder()
        self.rec = Recorder()
        self.codec = codec_for(config, self.rec)
        self.enrolment = Enrolment(config, self.codec, self.setup)
        self.drain_rec = Recorder()
        self.phase = "starting"
        self.channels: list[list[grpc.aio.Channel]] = []
        self.devices: list[SimDevice] = []
        self.directory: dict[int, list[str]] = {}
        self.user_ids: list[int] = []
        self.acked: dict[str, set[str]] = {}
        self.stop = asyncio.Event()
        self.inflight = 0
        self.sends_started = 0
        self.skipped = 0
        self.run_seconds = 0.0
        names = [n for n, w in config.mix.items() if w > 0]
        self.op_names = names
        self.op_weights = [float(config.mix[n]) for n in names]
        self.operations: dict[str, Callable[[], Awaitable[None]]] = {
            "send": self.op_send,
            "group": self.op_group,
            "fetch": self.op_fetch,
            "subscribe": self.op_subscribe,
        }

    # ------------------------------------------------------------------ plumbing

    def put(self, *message: Any) -> None:
        self.out_q.put(message)

    async def command(self, wait: float) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = await asyncio.to_thread(self.cmd_q.get, True, wait)
        except queue.Empty:
            raise Aborted(f"no word from the coordinator in {wait:.0f}s") from None
        if message[0] == "abort":
            raise Aborted("coordinator aborted the run")
        return message

    def snapshot(self) -> dict[str, Any]:
        rec = self.drain_rec if self.phase == "drain" else self.rec
        return {
            "phase": self.phase,
            "registered": self.enrolment.registered,
            "registration_failed": self.enrolment.failed,
            "ok": dict(rec.ok),
            "errors": self.rec.error_total() + self.drain_rec.error_total(),
            "messages": self.rec.events.get("messages", 0),
            "received": self.rec.events.get("received", 0),
            "inflight": self.inflight,
            "skipped": self.skipped,
        }

    async def progress(self) -> None:
        while True:
            self.put("progress", self.index, self.snapshot())
            await asyncio.sleep(PROGRESS_EVERY)

    # ------------------------------------------------------------------ setup

    def open_channels(self) -> None:
        for target in self.config.targets:
            self.channels.append(
                [
                    grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
                    for _ in range(self.config.channels)
                ]
            )

    async def close_channels(self) -> None:
        for group in self.channels:
            for channel in group:
                await channel.close()

    async def register(self) -> None:
        c = self.config
        for user in self.users:
            target = c.target_of(user)
            for d in range(c.devices):
                channel = self.channels[target][(user * c.devices + d) % c.channels]
                self.devices.append(
                    SimDevice(
                        user, d, channel, c.outbox_of(target), c.hawk_address(target), c.run_id
                    )
                )
        gate = asyncio.Semaphore(c.register_concurrency)

        async def one(device: SimDevice) -> bool:
            async with gate:
                return await self.enrolment.enrol(device)

        try:
            async with asyncio.timeout(c.register_timeout):
                outcomes = await asyncio.gather(*(one(d) for d in self.devices))
        except TimeoutError:
            outcomes = [d.signer is not None for d in self.devices]
            self.enrolment.note(f"registration timed out after {c.register_timeout}s")
        failed_users = {d.user for d, ok in zip(self.devices, outcomes, strict=True) if not ok}
        self.devices = [d for d in self.devices if d.user not in failed_users]

    def my_directory(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for d in self.devices:
            out.setdefault(d.user, []).append(d.box_id)
        return out

    # ------------------------------------------------------------------ operations

    def pick_op(self) -> str:
        return self.rng.choices(self.op_names, self.op_weights)[0]

    async def op_send(self) -> None:
        """1:1: one message to every box of one other user."""
        await self._send(1)

    async def op_group(self) -> None:
        """Group: one message, one Send, to ``group_size`` other users."""
        await self._send(self.config.group_size)

    async def op_subscribe(self) -> None:
        """A short Subscribe session, as an app coming to the foreground.

        Drains what is pending (until the ``live`` event; its latency is
        recorded as "Subscribe"), takes pushed messages for up to
        ``SUBSCRIBE_WINDOW`` seconds, then acks the highest position seen, at
        most the last ``ack_limit`` the stream sent (docs/store.md, "Long
        sweeps").
        Every message goes through the same audit as Fetch.
        """
        device = self.pick_fetcher()
        c = self.config
        async with device.lock:
            started = time.perf_counter()
            stream = device.subscribe(0, c.rpc_timeout + SUBSCRIBE_WINDOW + 5.0)
            top, fresh, live_at, ack_limit = 0, 0, None, 0
            try:
                while True:
                    wait = c.rpc_timeout
                    if live_at is not None:
                        wait = SUBSCRIBE_WINDOW - (time.perf_counter() - live_at)
                        if wait <= 0:
                            break
                    try:
                        event = await asyncio.wait_for(anext(stream), wait)
                    except (StopAsyncIteration, TimeoutError):
                        break
                    kind = event.WhichOneof("event")
                    ack_limit = max(ack_limit, event.ack_limit)  # 0: none (SQLite)
                    if kind == "live":
                        live_at = time.perf_counter()
                        self.rec.ok_call("Subscribe", live_at - started)
                    elif kind == "message":
                        m = event.message
                        if device.audit.observe(m.message_id, m.position):
                            fresh += 1
                            await self._delivered(device, m, self.rec, live_at is not None)
                        top = max(top, m.position)
                    elif kind == "catch_up":
                        break
            except grpc.aio.AioRpcError as exc:
                self.rec.failed_call("Subscribe", str(exc.code().name))
                raise OpFailed(str(exc.code().name)) from None
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            self.rec.event("received", fresh)
            await self._ack(device, min(top, ack_limit) if ack_limit else top, self.rec)

    async def _send(self, recipients: int) -> None:
        c = self.config
        sender = self.rng.choice(self.devices)
        pool = self.user_ids
        want = min(recipients, len(pool) - 1)
        picked = [u for u in self.rng.sample(pool, min(want + 1, len(pool))) if u != sender.user]
        boxes = [box for u in picked[:want] for box in self.directory[u]]
        message_id = str(uuid.uuid4())
        body = stamped_body(self.rng, c.payload_bytes)
        ciphertexts = await self.codec.seal(sender, boxes, message_id, body)
        pending = boxes
        last_error = ""
        waits = 0
        attempt = 0
        while attempt <= c.send_retries:
            request = pb.SendRequest(
                messages=[
                    pb.OutgoingMessage(
                        recipient_box_id=b, message_id=message_id, ciphertext=ciphertexts[b]
                    )
                    for b in pending
                ]
            )
            started = time.perf_counter()
            try:
                reply = await sender.call("Send", request, pb.SendResponse, c.rpc_timeout)
            except grpc.aio.AioRpcError as exc:
                last_error = str(exc.code().name)
                info = error_info(exc)
                if info is not None and info.reason == "SEND_RATE_LIMITED":
                    # The server refused the whole Send and stored nothing:
                    # wait as told and send the same ids again.
                    self.rec.failed_call("Send", "SEND_RATE_LIMITED")
                    if waits < RATE_LIMIT_WAITS:
                        waits += 1
                        told = float(info.metadata.get("retry_after_seconds", "1") or 1)
                        wait = min(told, MAX_RATE_LIMIT_WAIT) * self.rng.uniform(1.0, 1.2)
                        await asyncio.sleep(wait)
                        continue
                    break
                self.rec.failed_call("Send", last_error)
                if exc.code() in RETRYABLE and attempt < c.send_retries:
                    await self.pause(attempt)
                    attempt += 1
                    continue
                break
            self.rec.ok_call("Send", time.perf_counter() - started)
            retry: list[str] = []
            acked = 0
            for result in reply.results:
                if result.outcome in (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE):
                    self.acked.setdefault(result.recipient_box_id, set()).add(message_id)
                    acked += 1
                    if result.outcome == pb.SEND_OUTCOME_DUPLICATE:
                        self.rec.event("outcome:DUPLICATE")
                else:
                    name = CODE_NAMES.get(result.code, str(result.code))
                    self.rec.event(f"rejected:{name}/{result.reason}")
                    if result.code == UNAVAILABLE_CODE:
                        retry.append(result.recipient_box_id)
            self.rec.event("messages", acked)
            self.rec.event("outcome:QUEUED_OR_DUPLICATE", acked)
            pending = retry
            if not pending:
                return
            last_error = "REJECTED"
            if attempt < c.send_retries:
                await self.pause(attempt)
            attempt += 1
        self.rec.event("unacknowledged", len(pending))
        raise OpFailed(last_error or "REJECTED")

    async def pause(self, attempt: int) -> None:
        """Back off before a retry, so a restarting server is not met by a burst of
        instant retries that all fail before it is back (and then count as unacknowledged)."""
        await asyncio.sleep(self.config.backoff(attempt) * self.rng.uniform(0.5, 1.0))

    def pick_fetcher(self) -> SimDevice:
        for _ in range(4):
            device = self.rng.choice(self.devices)
            if not device.lock.locked():
                return device
        return device

    async def op_fetch(self) -> None:
        await self.fetch_and_ack(self.pick_fetcher(), self.rec)

    async def fetch_and_ack(self, device: SimDevice, rec: Recorder) -> int:
        """Fetch every page (bounded), dedupe like a client, ack the top position.
        Answers how many messages were new to the device."""
        c = self.config
        fresh = 0
        async with device.lock:
            after, top, ack_limit = 0, 0, 0
            for _ in range(MAX_PAGES):
                started = time.perf_counter()
                try:
                    page = await device.call(
                        "Fetch",
                        pb.FetchRequest(after=after, limit=c.fetch_limit),
                        pb.FetchResponse,
                        c.rpc_timeout,
                    )
                except grpc.aio.AioRpcError as exc:
                    rec.failed_call("Fetch", str(exc.code().name))
                    raise OpFailed(str(exc.code().name)) from None
                rec.ok_call("Fetch", time.perf_counter() - started)
                if not after:  # the sweep's first page bounds its ack
                    ack_limit = page.ack_limit
                for m in page.messages:
                    if device.audit.observe(m.message_id, m.position):
                        fresh += 1
                        await self._delivered(device, m, rec, rec is self.rec)
                    top = max(top, m.position)
                after = page.next_after
                if not page.more:
                    break
            rec.event("received", fresh)
            await self._ack(device, min(top, ack_limit) if ack_limit else top, rec)
        return fresh

    async def _delivered(
        self, device: SimDevice, m: pb.QueuedMessage, rec: Recorder, timed: bool
    ) -> None:
        """Open a new message; time its delivery when ``timed`` (not while catching up)."""
        sent = await self.codec.open(device, m)
        if sent is None:
            rec.event("unreadable")
        elif timed:
            rec.ok_call(DELIVERY, max(0.0, time.time() - sent))

    async def _ack(self, device: SimDevice, top: int, rec: Recorder) -> None:
        """Ack through ``top`` when it is above the device's cursor."""
        c = self.config
        if top > device.audit.acked_through:
            started = time.perf_counter()
            try:
                reply = await device.call(
                    "Ack", pb.AckRequest(through=top), pb.AckResponse, c.rpc_timeout
                )
            except grpc.aio.AioRpcError as exc:
                rec.failed_call("Ack", str(exc.code().name))
                raise OpFailed(str(exc.code().name)) from None
            rec.ok_call("Ack", time.perf_counter() - started)
            device.audit.acked(reply.cursor)

    async def run_op(self, op: str, started: float) -> None:
        if op in SEND_OPS:
            if self.quota is not None and self.sends_started >= self.quota:
                self.stop.set()
                return
            self.sends_started += 1
            if self.quota is not None and self.sends_started >= self.quota:
                self.stop.set()
        self.inflight += 1
        try:
            await self.operations[op]()
        except OpFailed as exc:
            self.rec.failed_call(f"op:{op}", exc.code)
            await asyncio.sleep(0.01)  # a failing server must not turn this into a spin
            return
        except Exception as exc:  # a client-side failure (e.g. a bad server signature)
            self.rec.failed_call(f"op:{op}", type(exc).__name__)
            await asyncio.sleep(0.01)
            return
        finally:
            self.inflight -= 1
        self.rec.ok_call(f"op:{op}", time.perf_counter() - started)

    # ------------------------------------------------------------------ phases

    async def closed_loop(self) -> None:
        while not self.stop.is_set():
            await self.run_op(self.pick_op(), time.perf_counter())

    async def open_loop(self, rate: float) -> None:
        """Ops at ``rate``/s on a fixed schedule; each timed from its scheduled start.
        When ``max_inflight`` are outstanding, a due op is skipped (and counted)."""
        interval = 1.0 / rate
        tasks: set[asyncio.Task[None]] = set()
        base = time.perf_counter()
        n = 0
        while not self.stop.is_set():
            due = base + n * interval
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))
                continue
            n += 1
            if self.inflight >= self.config.max_inflight:
                self.skipped += 1
                if n % 64 == 0:
                    await asyncio.sleep(0)
                continue
            task = asyncio.create_task(self.run_op(self.pick_op(), due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if n % 64 == 0:
                await asyncio.sleep(0)
        if tasks:
            await asyncio.wait(tasks, timeout=self.op_bound())

    def op_bound(self) -> float:
        return self.config.op_bound()

    async def run(self, t0: float) -> None:
        c = self.config
        self.rec.t0 = t0
        await asyncio.sleep(max(0.0, t0 - time.time()))
        self.phase = "run"
        started = time.perf_counter()
        limit = c.duration if c.duration is not None else c.max_seconds
        if self.rate is not None:
            loops = [asyncio.create_task(self.open_loop(self.rate))]
        else:
            loops = [asyncio.create_task(self.closed_loop()) for _ in range(self.workers)]
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=limit)
        except TimeoutError:
            pass
        self.stop.set()
        self.run_seconds = time.perf_counter() - started
        self.phase = "finishing"
        _, late = await asyncio.wait(loops, timeout=self.op_bound())
        for task in late:
            task.cancel()

    async def drain(self, expected: dict[str, set[str]]) -> AuditResult:
        """Fetch until every device holds what it must (bounded), settle, look once more."""
        c = self.config
        self.phase = "drain"
        gate = asyncio.Semaphore(max(4, self.workers))

        async def visit(device: SimDevice) -> int:
            async with gate:
                try:
                    return await self.fetch_and_ack(device, self.drain_rec)
                except OpFailed:
                    await asyncio.sleep(0.05)
                    return 0

        deadline = time.monotonic() + c.drain_timeout
        while time.monotonic() < deadline:
            missing = [
                d
                for d in self.devices
                if not d.audit.received.keys() >= expected.get(d.box_id, set())
            ]
            if not missing:
                break
            fresh = await asyncio.gather(*(visit(d) for d in missing))
            if not any(fresh):
                await asyncio.sleep(0.05)
        if c.settle > 0:
            await asyncio.sleep(c.settle)
        await asyncio.gather(*(visit(d) for d in self.devices))
        result = AuditResult()
        for d in self.devices:
            result.add_device(d.label, d.audit, expected.get(d.box_id, set()))
        return result

    async def main(self) -> None:
        c = self.config
        self.open_channels()
        reporter = asyncio.create_task(self.progress())
        try:
            self.phase = "register"
            await self.register()
            self.put(
                "registered",
                self.index,
                {
                    "users": self.my_directory(),
                    "failed": self.enrolment.failed,
                    "errors": self.enrolment.errors,
                },
            )
            self.phase = "ready"
            message = await self.command(c.register_timeout * 2 + 120)
            self.directory = {int(u): list(b) for u, b in message[1].items()}
            self.user_ids = sorted(self.directory)
            if not self.devices or len(self.user_ids) < 2:
                raise Aborted("not enough registered users to send anything")
            await self.run(float(message[2]))
            self.put(
                "sent",
                self.index,
                {"acked": {box: sorted(mids) for box, mids in self.acked.items()}},
            )
            self.phase = "waiting"
            message = await self.command(c.max_seconds + self.op_bound() * 2 + 120)
            expected = {box: set(mids) for box, mids in message[1].items()}
            audit = await self.drain(expected)
            self.phase = "done"
            self.put(
                "result",
                self.index,
                {
                    "recorder": self.rec.to_dict(),
                    "setup": self.setup.to_dict(),
                    "drain": self.drain_rec.to_dict(),
                    "audit": audit.to_dict(),
                    "run_seconds": self.run_seconds,
                    "skipped": self.skipped,
                    "sends_started": self.sends_started,
                    "devices": len(self.devices),
                },
            )
        finally:
            reporter.cancel()
            self.put("progress", self.index, self.snapshot())
            await self.close_channels()


def codec_for(config: LoadConfig, recorder: Recorder) -> PayloadCodec:
    """The payload codec ``--crypto`` names; real crypto records its CPU cost in ``recorder``."""
    if config.crypto == "real":
        return RealCrypto(recorder, config.rpc_timeout)
    return RandomPayloads()


def child_main(index: int, config: dict[str, Any], cmd_q: Any, out_q: Any) -> None:
    """Entry point of a load-generating process (multiprocessing, spawn)."""
    try:
        asyncio.run(Worker(index, LoadConfig.from_dict(config), cmd_q, out_q).main())
    except Aborted as exc:
        out_q.put(("aborted", index, str(exc)))
    except BaseException:
        out_q.put(("crashed", index, traceback.format_exc()))
        raise SystemExit(3) from None


__all__ = ["DELIVERY", "Worker", "child_main"]
