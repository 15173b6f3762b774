"""The wiring of one server process, in one place.

Every part of the server receives its collaborators at construction, so
the order they are built in is the order they depend on each other, read
top to bottom here: the store, then the notifier and secrets, the caches,
the device-key lookup, the prekey status (whose ``prekeys_low`` hint Fetch
and streams carry), real-time delivery (which re-checks devices through
that lookup and tells the push coalescer of opened streams), the push
dispatcher (which asks real-time delivery who streams), the account
handlers (which tell real-time delivery of device changes), registration
(which tells the accounts of a new box), the inbox (which asks the
accounts and tells real-time delivery and the push dispatcher), the prekey
RPCs (RequestKey's visibility reads, from the accounts), and last the
service that wraps them all. ``RossbyServer`` (``rossby.server.app``)
calls ``server_store`` when it is built and ``build_service`` once its port
is bound (Hawk signs the real port when listening on :0).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from rossby.config import Settings
from rossby.contacts import ContactHasher
from rossby.hawk import HawkVerifier, NonceCache
from rossby.server.account_rpcs import AccountRpcs
from rossby.server.accounts import Accounts
from rossby.server.activity import Activity, record_interval
from rossby.server.auth import identity_lookup
from rossby.server.authcache import AuthCache
from rossby.server.compaction import Compactor
from rossby.server.devicekeys import DeviceKeys
from rossby.server.idle import IdleDevices, IdleRule
from rossby.server.idleunlink import IdleUnlinker
from rossby.server.inbox import Inbox
from rossby.server.linking import Linker
from rossby.server.logtags import log_key
from rossby.server.metrics import MeteredNotifier, Metrics, metered_store
from rossby.server.notify import Notifier, NotifierConfig, build_notifier
from rossby.server.prekeys import Prekeys
from rossby.server.prekeystatus import PrekeyStatus
from rossby.server.push.coalesce import Coalescer
from rossby.server.push.config import push_config
from rossby.server.push.dispatch import Dispatcher, RetryPolicy
from rossby.server.push.factory import build_pushers
from rossby.server.push.metrics import PushMetrics
from rossby.server.push.rpcs import PushRpcs
from rossby.server.ratelimit import RateLimit
from rossby.server.realtime import Realtime
from rossby.server.registration import ContactCodeLimit, Registrar
from rossby.server.replay import ReplayGuard
from rossby.server.secrets import load_hawk_keyring, load_secret
from rossby.server.service import RossbyService
from rossby.store import Device, Store, open_store
from rossby.store.from_settings import store_options


def server_store(
    settings: Settings, store: Store | None, metrics: Metrics, clock: Callable[[], float]
) -> Store:
    """The store every handler sees: the given one (tests) or the configured
    one, always behind ``MeteredStore`` (``rossby.server.metrics``)."""
    raw = store or open_store(settings.store, store_options(settings, clock))
    return metered_store(raw, metrics, clock)


def notifier_config(settings: Settings) -> NotifierConfig:
    return NotifierConfig(
        kind=settings.notifier,  # type: ignore[arg-type]
        outbox_dir=settings.outbox_dir,
        smtp_host=settings.smtp_host or None,
        smtp_port=settings.smtp_port or None,
        smtp_security=settings.smtp_security,  # type: ignore[arg-type]
        smtp_username=settings.smtp_username or None,
        smtp_password=settings.smtp_password or None,
        smtp_from=settings.smtp_from or None,
        webhook_url=settings.webhook_url or None,
        webhook_token=settings.webhook_token or None,
        phone_via=settings.phone_via,  # type: ignore[arg-type]
        timeout_seconds=settings.notifier_timeout,
    )


def build_service(
    settings: Settings,
    *,
    store: Store,
    metrics: Metrics,
    notifier: Notifier | None,
    clock: Callable[[], float],
    stopping: asyncio.Event,
    port: int,
) -> RossbyService:
    """Build every handler of one process and the service over them.

    ``store`` is the server's (metered) store, ``stopping`` the event set
    when the server begins to stop, ``port`` the bound public port.
    """
    s = settings
    metered_notifier: Notifier = MeteredNotifier(
        notifier or build_notifier(notifier_config(s)), metrics
    )
    hasher = ContactHasher(load_secret(s, "contact_hash_key"))
    server_secret = load_secret(s, "server_secret")
    tag_key = log_key(server_secret)
    auth_cache = AuthCache(s.auth_cache_ttl)
    hawk_keys = load_hawk_keyring(s)
    device_keys = DeviceKeys(store, auth_cache, hawk_keys, tag_key)
    # Counts and the cached prekeys_low hint: read by Fetch and streams,
    # refreshed by uploads and claims, voided by rotation and revocation.
    prekey_status = PrekeyStatus(store, low_water=s.prekey_low_water, pool_max=s.prekey_pool_max)
    # Which devices were woken lately; a stream opened here wakes its device
    # for it (so after the stream drops, the next message pushes at once).
    coalescer = Coalescer(s.push_coalesce_seconds)
    # Open streams re-check their device like every call does (within
    # auth_cache_ttl), and at once when this process changes it.
    realtime = Realtime(
        s,
        store,
        metrics=metrics,
        clock=clock,
        stopping=stopping,
        server_secret=server_secret,
        device_check=device_keys.active_since,
        prekeys_low=prekey_status.low,
        on_stream_open=coalescer.awake,
    )
    # Wake-ups of sleeping devices: told by Send, off its path; it asks the
    # hub who streams where.
    pushing = push_config(s)
    dispatcher = Dispatcher(
        store,
        build_pushers(s, pushing),
        realtime.hub,
        coalescer,
        PushMetrics(metrics.registry),
        retry=RetryPolicy(attempts=s.push_retry_attempts, base=s.push_retry_base),
        concurrency=s.push_concurrency,
        target_cache_ttl=s.push_target_cache_ttl,
    )
    # Idle devices: every verified call records its device (at most once a
    # day or so per process, in the background); the Fetch warning check and
    # RequestKey unlink what is past device_idle_days (rossby.server.idle).
    # The unlink itself is the accounts' (a key-log entry, then what a
    # revocation does), built below: late-bound, as accounts are told of
    # the idle view's changes in turn.
    idle_rule = IdleRule.from_days(s.device_idle_days, s.device_idle_warning_days)

    async def idle_unlink(box_id: uuid.UUID, device: Device, rule: IdleRule) -> bool:
        return await unlinker.unlink(box_id, device, rule)

    activity = Activity(store, interval=record_interval(s.device_idle_days), clock=clock)
    idle = IdleDevices(
        store, idle_rule, clock=clock, unlink=idle_unlink, start_clock=activity.seen_device
    )
    activity.on_recorded = idle.device_seen

    def device_changed(box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        realtime.device_changed(box_id, device_id)
        idle.devices_changed(box_id)

    # One limit for Register and AddContact.
    contact_codes = ContactCodeLimit(
        s.register_contact_limit,
        s.register_contact_window,
        s.register_contact_ceiling,
        tag_key=server_secret,
    )
    accounts = Accounts(
        store,
        store,  # one contract: account calls are timed like the rest
        metered_notifier,
        hasher,
        server_secret,
        code_ttl=s.code_ttl,
        code_attempts=s.code_attempts,
        resend_interval=s.resend_interval,
        default_phone_region=s.default_phone_region,
        clock=clock,
        contact_codes=contact_codes,
        auth_cache=auth_cache,
        on_device_changed=device_changed,
        void_prekeys=prekey_status.void,
    )
    unlinker = IdleUnlinker(store, accounts.key_log, accounts.retire, clock=clock)
    linker = Linker(
        store,
        store,
        accounts.key_log,
        hawk_keys,
        home_region=s.region or "dc1",
        link_ttl=s.code_ttl,
        link_attempts=s.code_attempts,
        clock=clock,
    )
    registrar = Registrar(
        store,
        metered_notifier,
        hasher,
        server_secret,
        hawk_keys,
        log_key=tag_key,
        home_region=s.region or "dc1",
        code_ttl=s.code_ttl,
        code_attempts=s.code_attempts,
        resend_interval=s.resend_interval,
        max_contacts=s.max_contacts,
        default_phone_region=s.default_phone_region,
        clock=clock,
        contact_codes=contact_codes,
        register_per_address=RateLimit(
            "register_rate_per_address",
            s.register_rate_per_address,
            reason="ADDRESS_RATE_LIMITED",
        ),
        authorize_failures_per_address=RateLimit(
            "authorize_failures_per_address",
            s.authorize_failures_per_address,
            reason="ADDRESS_RATE_LIMITED",
        ),
        # The key log's genesis entry.
        on_box_created=accounts.box_created,
    )
    compactor = Compactor(store, s.compact_interval)
    inbox = Inbox(
        store,
        hasher,
        max_message_bytes=s.max_message_bytes,
        max_recipients=s.max_recipients,
        default_phone_region=s.default_phone_region,
        clock=clock,
        auth_cache=auth_cache,
        # Visibility, profile and key-log head in RequestKey; blocks in Send.
        accounts=accounts,
        realtime=realtime,
        send_limit=RateLimit(
            "send_rate_per_device", s.send_rate_per_device, reason="SEND_RATE_LIMITED"
        ),
        compactor=compactor,
        prekey_status=prekey_status,
        idle=idle,
        wake=dispatcher.queued,
    )
    prekeys = Prekeys(
        store,
        accounts,
        prekey_status,
        pool_max=s.prekey_pool_max,
        claim_per_device=RateLimit(
            "prekey_claim_rate_per_device",
            s.prekey_claim_rate_per_device,
            reason="PREKEY_CLAIM_RATE_LIMITED",
        ),
        claim_per_box=RateLimit(
            "prekey_claim_rate_per_box",
            s.prekey_claim_rate_per_box,
            reason="PREKEY_CLAIM_RATE_LIMITED",
        ),
        clock=clock,
    )
    verifier = HawkVerifier(
        identity_lookup(device_keys.hawk_key),
        host=s.hawk_host,
        port=s.public_port or port,
        nonce_cache=NonceCache(s.hawk_skew),
        skew_seconds=s.hawk_skew,
        clock=clock,
    )
    return RossbyService(
        s,
        metrics=metrics,
        notifier=metered_notifier,
        log_key=tag_key,
        registrar=registrar,
        inbox=inbox,
        prekeys=prekeys,
        compactor=compactor,
        account_rpcs=AccountRpcs(accounts, linker),
        account_limit=RateLimit(
            "account_rate_per_device", s.account_rate_per_device, reason="ACCOUNT_RATE_LIMITED"
        ),
        realtime=realtime,
        verifier=verifier,
        replay_guard=ReplayGuard(store, skew_seconds=s.hawk_skew),
        activity=activity,
        idle=idle,
        push_rpcs=PushRpcs(store, pushing, clock=clock, on_changed=dispatcher.targets_changed),
        dispatcher=dispatcher,
    )


__all__ = ["build_service", "notifier_config", "server_store"]
