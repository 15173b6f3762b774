"""Hawk core: conformance against mohawk (the oracle) in both directions, and
every refusal with its stable reason."""

from __future__ import annotations

import base64
import hmac
import time
from typing import Any

import mohawk
import pytest
from mohawk.exc import MacMismatch, MisComputedContentHash, TokenExpired
from mohawk.util import calculate_ts_mac

from rossby.errors import StoreUnavailable, Unauthenticated
from rossby.hawk import (
    CONTENT_TYPE,
    MAX_HEADER_LENGTH,
    REQUEST_ATTRIBUTES,
    HawkVerifier,
    NonceCache,
    ServerAuthenticationError,
    clock_offset,
    normalized_string,
    parse_header,
    parse_www_authenticate,
    payload_hash,
    server_authorization_header,
    sign_request,
    timestamp_mac,
    verify_server_authorization,
    www_authenticate_header,
)
from tests.support.clocks import FakeClock

BOX = "0b3e6c1e-4a55-4c1b-9f49-3f2f9f3f2a10"
DEVICE = "5f0c8a52-7d1e-4c3b-8a9f-1e2d3c4b5a69"
ID = f"{BOX}.{DEVICE}"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
HOST = "rossby.example"
PORT = 1205
RESOURCE = "/rossby.v1.Rossby/Send"
URL = f"http://{HOST}:{PORT}{RESOURCE}"
T = 1_800_000_000
# Arbitrary bytes, deliberately not UTF-8: the hash must cover raw bytes.
PAYLOAD = b"\x0a\x24\xff\xfe\x00ciphertext\x80\x81"


def mohawk_creds(key: bytes = KEY, id: str = ID) -> dict[str, Any]:
    return {"id": id, "key": key, "algorithm": "sha256"}


def mohawk_header(
    *,
    key: bytes = KEY,
    id: str = ID,
    url: str = URL,
    payload: bytes = PAYLOAD,
    ts: int = T,
    nonce: str = "n0nce1",
    **kw: Any,
) -> str:
    sender = mohawk.Sender(
        mohawk_creds(key, id),
        url,
        "POST",
        content=payload,
        content_type=CONTENT_TYPE,
        nonce=nonce,
        _timestamp=ts,
        **kw,
    )
    return str(sender.request_header)


def verifier(
    clock: FakeClock | None = None,
    cache: NonceCache | None = None,
    keys: dict[str, bytes] | None = None,
    host: str = HOST,
    port: int = PORT,
) -> HawkVerifier:
    table = {ID: KEY} if keys is None else keys

    async def lookup(hawk_id: str) -> bytes | None:
        return table.get(hawk_id)

    return HawkVerifier(
        lookup,
        host=host,
        port=port,
        nonce_cache=cache or NonceCache(),
        clock=clock or FakeClock(T),
    )


async def refused(
    v: HawkVerifier,
    header: str | None,
    *,
    payload: bytes = PAYLOAD,
    resource: str = RESOURCE,
    method: str = "POST",
) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        await v.verify(header, resource=resource, payload=payload, method=method)
    return info.value


def mohawk_receiver_offset(ts: int) -> float:
    """mohawk reads the wall clock; shift it to our fixed test time."""
    return ts - time.time()


# --- the specification's own examples (mozilla/hawk README) -----------------


def test_spec_readme_vectors() -> None:
    key = b"werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"
    common: dict[str, Any] = dict(
        ts=1353832234,
        nonce="j4h3g2",
        resource="/resource/1?b=1&a=2",
        host="example.com",
        port=8000,
        ext="some-app-ext-data",
    )
    get = normalized_string("header", method="GET", **common)
    assert get == (
        "hawk.1.header\n1353832234\nj4h3g2\nGET\n/resource/1?b=1&a=2\nexample.com\n8000\n\n"
        "some-app-ext-data\n"
    )
    mac = base64.b64encode(hmac.new(key, get.encode(), "sha256").digest()).decode()
    assert mac == "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="
    digest = payload_hash(b"Thank you for flying Hawk", "text/plain")
    assert digest == "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY="
    header = sign_request(
        "dh37fgj492je",
        key,
        method="POST",
        payload=b"Thank you for flying Hawk",
        content_type="text/plain",
        **common,
    )
    assert parse_header(header, REQUEST_ATTRIBUTES) == {
        "id": "dh37fgj492je",
        "ts": "1353832234",
        "nonce": "j4h3g2",
        "hash": digest,
        "ext": "some-app-ext-data",
        "mac": "aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw=",
    }


def test_content_type_parameters_and_case_do_not_change_the_hash() -> None:
    assert payload_hash(b"x", "Application/GRPC; charset=x") == payload_hash(b"x")


def test_normalized_string_escapes_ext_and_appends_app_lines() -> None:
    text = normalized_string(
        "header",
        ts=1,
        nonce="n",
        method="post",
        resource="/r",
        host="H",
        port=1,
        ext="a\\b\nc",
        app="app1",
        dlg=None,
    )
    assert text == "hawk.1.header\n1\nn\nPOST\n/r\nh\n1\n\na\\\\b\\nc\napp1\n\n"


# --- mohawk signs, we verify ------------------------------------------------


@pytest.mark.parametrize("ext", [None, "some-app-ext-data", "key=value; x=[1,2] ~!@#$%^&*()"])
async def test_mohawk_headers_are_accepted(ext: str | None) -> None:
    header = mohawk_header(ext=ext)
    verified = await verifier().verify(header, resource=RESOURCE, payload=PAYLOAD)
    assert (verified.id, verified.ts, verified.nonce, verified.ext) == (ID, T, "n0nce1", ext or "")
    assert verified.payload_hash == payload_hash(PAYLOAD)
    assert verified.key == KEY


async def test_mohawk_empty_payload_with_hash_is_accepted() -> None:
    header = mohawk_header(payload=b"")
    verified = await verifier().verify(header, resource=RESOURCE, payload=b"")
    assert verified.payload_hash == payload_hash(b"")


async def test_mohawk_app_and_dlg_are_covered() -> None:
    header = mohawk_header(app="some-app", dlg="some-dlg")
    verified = await verifier().verify(header, resource=RESOURCE, payload=PAYLOAD)
    assert (verified.app, verified.dlg) == ("some-app", "some-dlg")


async def test_dlg_without_app_is_accepted_but_dropped_as_unsigned() -> None:
    header = mohawk_header(dlg="unsigned")
    verified = await verifier().verify(header, resource=RESOURCE, payload=PAYLOAD)
    assert verified.dlg is None


async def test_host_is_case_insensitive() -> None:
    header = mohawk_header(url=f"http://ROSSBY.Example:{PORT}{RESOURCE}")
    await verifier(host="Rossby.EXAMPLE").verify(header, resource=RESOURCE, payload=PAYLOAD)


# --- we sign, mohawk verifies -----------------------------------------------


def ours(*, ts: int = T, nonce: str = "n0nce1", ext: str = "", payload: bytes = PAYLOAD) -> str:
    return sign_request(
        ID,
        KEY,
        method="POST",
        resource=RESOURCE,
        host=HOST,
        port=PORT,
        payload=payload,
        content_type=CONTENT_TYPE,
        ts=ts,
        nonce=nonce,
        ext=ext,
    )


@pytest.mark.parametrize("ext", ["", "some-app-ext-data"])
def test_our_headers_are_accepted_by_mohawk(ext: str) -> None:
    seen: list[tuple[str, str, str]] = []

    def seen_nonce(sender_id: str, nonce: str, ts: str) -> bool:
        seen.append((sender_id, nonce, ts))
        return False

    receiver = mohawk.Receiver(
        lambda _id: mohawk_creds(),
        ours(ext=ext),
        URL,
        "POST",
        content=PAYLOAD,
        content_type=CONTENT_TYPE,
        seen_nonce=seen_nonce,
        localtime_offset_in_seconds=mohawk_receiver_offset(T),
    )
    assert receiver.parsed_header.get("ext", "") == ext
    assert seen == [(ID, "n0nce1", str(T))]


def test_our_mac_equals_mohawks_byte_for_byte() -> None:
    theirs = parse_header(mohawk_header(ext="e"), REQUEST_ATTRIBUTES)
    mine = parse_header(ours(ext="e"), REQUEST_ATTRIBUTES)
    assert mine == theirs


def test_mohawk_refuses_our_header_for_another_payload() -> None:
    with pytest.raises(MisComputedContentHash):
        mohawk.Receiver(
            lambda _id: mohawk_creds(),
            ours(),
            URL,
            "POST",
            content=PAYLOAD + b"!",
            content_type=CONTENT_TYPE,
            seen_nonce=lambda *_: False,
            localtime_offset_in_seconds=mohawk_receiver_offset(T),
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [("credentials_id", 'a"b'), ("nonce", "a\\b"), ("ext", "line\nbreak"), ("nonce", "")],
)
def test_sign_request_refuses_values_a_parser_would_reject(field: str, value: str) -> None:
    kwargs: dict[str, Any] = dict(
        credentials_id=ID,
        key=KEY,
        method="POST",
        resource=RESOURCE,
        host=HOST,
        port=PORT,
        payload=PAYLOAD,
        content_type=CONTENT_TYPE,
        ts=T,
        nonce="n",
        ext="",
    )
    kwargs[field] = value
    with pytest.raises(ValueError):
        sign_request(**kwargs)


def test_sign_request_needs_a_path() -> None:
    with pytest.raises(ValueError):
        sign_request(
            ID,
            KEY,
            method="POST",
            resource="rossby.v1.Rossby/Send",
            host=HOST,
            port=PORT,
            payload=b"",
            content_type=CONTENT_TYPE,
            ts=T,
            nonce="n",
        )


# --- refusals ----------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer abc.def", "Basic dXNlcjpwYXNz"])
async def test_missing(header: str | None) -> None:
    assert (await refused(verifier(), header)).reason == "HAWK_MISSING"


GOOD = 'id="a.b", ts="1800000000", nonce="n", hash="aGFzaA==", mac="bWFj"'


@pytest.mark.parametrize(
    "header",
    [
        "Hawk",
        "Hawk ",
        "Hawk " + GOOD + "\n",
        "Hawk " + GOOD.replace('"', "'"),
        "Hawk " + GOOD.replace(", ", " "),
        "Hawk " + GOOD.replace('id="a.b"', "id=a.b"),
        "Hawk " + GOOD + ', foo="bar"',
        "Hawk " + GOOD + ', nonce="again"',
        "Hawk " + GOOD + " garbage",
        "Hawk " + 'id="a.b", ts="1800000000", nonce="n", hash="aGFzaA=="',  # no mac
        "Hawk " + 'ts="1800000000", nonce="n", hash="aGFzaA==", mac="bWFj"',  # no id
        "Hawk " + GOOD.replace('ts="1800000000"', 'ts="18e8"'),
        "Hawk " + GOOD.replace('ts="1800000000"', 'ts="-1"'),
        "Hawk " + GOOD.replace('ts="1800000000"', 'ts="01800000000"'),
        "Hawk " + GOOD.replace('ts="1800000000"', 'ts=""'),
        "Hawk " + GOOD + ', ext=""',
    ],
)
async def test_malformed(header: str) -> None:
    assert (await refused(verifier(), header)).reason == "HAWK_MALFORMED"


@pytest.mark.parametrize(
    "ext",
    ["back\\slash", "tab\there", "del\x7f", "caf\u00e9", "nul\x00", 'quote\\"d'],
)
async def test_attribute_with_bad_characters(ext: str) -> None:
    header = mohawk_header() + f', ext="{ext}"'
    err = await refused(verifier(), header)
    assert err.reason == "HAWK_MALFORMED"


async def test_over_long_header_is_refused_before_parsing() -> None:
    base = mohawk_header(ext="x")
    # A valid header of exactly the maximum length is still accepted ...
    ext = "x" * (MAX_HEADER_LENGTH - len(base) + 1)
    exact = mohawk_header(ext=ext)
    assert len(exact) == MAX_HEADER_LENGTH
    await verifier().verify(exact, resource=RESOURCE, payload=PAYLOAD)
    # ... one character more is not, whatever it contains.
    longer = mohawk_header(ext=ext + "x")
    err = await refused(verifier(), longer)
    assert (err.reason, err.message) == ("HAWK_MALFORMED", "Header length too long")


async def test_unknown_id() -> None:
    err = await refused(verifier(keys={}), mohawk_header())
    assert err.reason == "HAWK_UNKNOWN_ID"


async def test_wrong_key() -> None:
    err = await refused(verifier(), mohawk_header(key=OTHER_KEY))
    assert err.reason == "HAWK_BAD_MAC"


async def test_tampered_payload() -> None:
    err = await refused(verifier(), mohawk_header(), payload=PAYLOAD[:-1] + b"\x00")
    assert err.reason == "HAWK_BAD_PAYLOAD_HASH"


async def test_substituted_hash_attribute_breaks_the_mac() -> None:
    header = mohawk_header().replace(payload_hash(PAYLOAD), payload_hash(b"other"))
    err = await refused(verifier(), header, payload=b"other")
    assert err.reason == "HAWK_BAD_MAC"


async def test_tampered_method_path() -> None:
    err = await refused(verifier(), mohawk_header(), resource="/rossby.v1.Rossby/Ack")
    assert err.reason == "HAWK_BAD_MAC"


async def test_tampered_http_method() -> None:
    err = await refused(verifier(), mohawk_header(), method="PUT")
    assert err.reason == "HAWK_BAD_MAC"


@pytest.mark.parametrize(("host", "port"), [("other.example", PORT), (HOST, 443)])
async def test_signed_for_another_server(host: str, port: int) -> None:
    err = await refused(verifier(host=host, port=port), mohawk_header())
    assert err.reason == "HAWK_BAD_MAC"


@pytest.mark.parametrize("payload", [b"", PAYLOAD])
async def test_missing_hash_is_refused_even_for_an_empty_body(payload: bytes) -> None:
    sender = mohawk.Sender(
        mohawk_creds(), URL, "POST", always_hash_content=False, nonce="n", _timestamp=T
    )
    assert "hash=" not in sender.request_header
    err = await refused(verifier(), sender.request_header, payload=payload)
    assert (err.reason, err.message) == ("HAWK_BAD_PAYLOAD_HASH", "Missing required payload hash")


async def test_lookup_failure_propagates() -> None:
    async def down(_id: str) -> bytes | None:
        raise StoreUnavailable("store down")

    v = HawkVerifier(down, host=HOST, port=PORT, nonce_cache=NonceCache(), clock=FakeClock(T))
    with pytest.raises(StoreUnavailable):
        await v.verify(mohawk_header(), resource=RESOURCE, payload=PAYLOAD)


# --- timestamps --------------------------------------------------------------


@pytest.mark.parametrize("drift", [-60, 60, -0.5, 59.9])
async def test_within_skew_is_accepted(drift: float) -> None:
    await verifier(FakeClock(T + drift)).verify(mohawk_header(), resource=RESOURCE, payload=PAYLOAD)


@pytest.mark.parametrize("drift", [-3600, -60.001, 60.001, 86400])
async def test_stale_answers_a_verifiable_server_time(drift: float) -> None:
    now = T + drift
    cache = NonceCache()
    err = await refused(verifier(FakeClock(now), cache), mohawk_header())
    assert (err.reason, err.message) == ("HAWK_STALE", "Stale timestamp")
    server_ts = int(now // 1)
    assert err.metadata["ts"] == str(server_ts)
    # The tsm is exactly what a Hawk server sends (mohawk as the oracle) ...
    assert err.metadata["tsm"] == calculate_ts_mac(server_ts, mohawk_creds()).decode()
    # ... and a stale request never burns its nonce.
    assert len(cache) == 0


async def test_client_corrects_its_clock_from_a_stale_answer() -> None:
    server = FakeClock(T + 500)
    v = verifier(server)
    client_now = float(T)
    err = await refused(v, ours(ts=int(client_now)))
    offset = clock_offset(err.metadata["ts"], err.metadata["tsm"], KEY, now=client_now)
    assert offset == 500
    corrected = ours(ts=int(client_now + offset), nonce="n0nce2")
    verified = await v.verify(corrected, resource=RESOURCE, payload=PAYLOAD)
    assert verified.ts == T + 500


@pytest.mark.parametrize(
    ("ts", "tsm_key", "tamper"),
    [("1800000500", OTHER_KEY, False), ("1800000500", KEY, True), ("18e8", KEY, False)],
)
def test_client_refuses_an_unverifiable_server_time(ts: str, tsm_key: bytes, tamper: bool) -> None:
    tsm = timestamp_mac(ts, tsm_key)
    if tamper:
        ts = "1800000501"
    with pytest.raises(ServerAuthenticationError):
        clock_offset(ts, tsm, KEY, now=T)


def test_stale_challenge_round_trips_and_matches_mohawks() -> None:
    tsm = timestamp_mac(T, KEY)
    assert parse_www_authenticate(www_authenticate_header(T, tsm)) == (str(T), tsm)
    with pytest.raises(TokenExpired) as info:
        mohawk.Receiver(
            lambda _id: mohawk_creds(),
            ours(ts=T - 3600),
            URL,
            "POST",
            content=PAYLOAD,
            content_type=CONTENT_TYPE,
            seen_nonce=lambda *_: False,
            localtime_offset_in_seconds=mohawk_receiver_offset(T),
        )
    parsed = parse_www_authenticate(info.value.www_authenticate)
    assert parsed is not None
    assert abs(clock_offset(*parsed, KEY, now=T)) <= 2
    assert parse_www_authenticate('Hawk error="no time here"') is None
    assert parse_www_authenticate("not hawk") is None


# --- replay ------------------------------------------------------------------


async def test_replay_is_refused() -> None:
    v = verifier()
    header = mohawk_header()
    await v.verify(header, resource=RESOURCE, payload=PAYLOAD)
    assert (await refused(v, header)).reason == "HAWK_REPLAY"


async def test_nonce_is_scoped_to_id_and_timestamp() -> None:
    other = "11111111-2222-3333-4444-555555555555." + DEVICE
    v = verifier(keys={ID: KEY, other: KEY})
    await v.verify(mohawk_header(), resource=RESOURCE, payload=PAYLOAD)
    await v.verify(mohawk_header(ts=T + 1), resource=RESOURCE, payload=PAYLOAD)
    await v.verify(mohawk_header(id=other), resource=RESOURCE, payload=PAYLOAD)


async def test_check_order() -> None:
    late = FakeClock(T + 3600)
    # MAC before timestamp, payload hash before timestamp.
    assert (await refused(verifier(late), mohawk_header(key=OTHER_KEY))).reason == "HAWK_BAD_MAC"
    err = await refused(verifier(late), mohawk_header(), payload=b"x")
    assert err.reason == "HAWK_BAD_PAYLOAD_HASH"
    # Timestamp before nonce: an old replay is answered as stale.
    clock = FakeClock(T)
    v = verifier(clock)
    header = mohawk_header()
    await v.verify(header, resource=RESOURCE, payload=PAYLOAD)
    clock.now = T + 61
    assert (await refused(v, header)).reason == "HAWK_STALE"


# --- nonce cache -------------------------------------------------------------


def test_nonce_cache_forgets_after_twice_the_skew() -> None:
    cache = NonceCache(skew_seconds=60)
    assert cache.check_and_add(ID, "n", T, now=T)
    assert not cache.check_and_add(ID, "n", T, now=T + 120)
    assert cache.check_and_add(ID, "other", T, now=T + 100)
    assert cache.check_and_add(ID, "n", T, now=T + 120.5)  # expired, then re-added
    assert len(cache) == 2
    assert cache.check_and_add(ID, "x", T + 400, now=T + 400)
    assert len(cache) == 1


def test_nonce_cache_is_capped() -> None:
    cache = NonceCache(max_entries=3)
    for i in range(3):
        assert cache.check_and_add(ID, f"n{i}", T, now=T)
    assert cache.check_and_add(ID, "n3", T, now=T)
    assert (len(cache), cache.evicted) == (3, 1)
    assert cache.check_and_add(ID, "n0", T, now=T)  # the oldest was forgotten
    assert not cache.check_and_add(ID, "n3", T, now=T)


def test_nonce_cache_stays_bounded_under_steady_load() -> None:
    cache = NonceCache(skew_seconds=60)
    for i in range(10_000):
        cache.check_and_add(ID, str(i), T + i // 10, now=T + i / 10)
    assert len(cache) <= 1201


def test_verifier_needs_a_cache_covering_its_window() -> None:
    async def lookup(_id: str) -> bytes | None:
        return None

    with pytest.raises(ValueError):
        HawkVerifier(lookup, host=HOST, port=PORT, nonce_cache=NonceCache(30), skew_seconds=60)


# --- Server-Authorization ----------------------------------------------------


@pytest.mark.parametrize("ext", ["", "signed-by-server"])
async def test_server_authorization_is_accepted_by_mohawk(ext: str) -> None:
    sender = mohawk.Sender(
        mohawk_creds(),
        URL,
        "POST",
        content=PAYLOAD,
        content_type=CONTENT_TYPE,
        nonce="n",
        _timestamp=T,
    )
    verified = await verifier().verify(sender.request_header, resource=RESOURCE, payload=PAYLOAD)
    body = b"\x08\x01response"
    header = server_authorization_header(
        verified, KEY, resource=RESOURCE, host=HOST, port=PORT, payload=body, ext=ext
    )
    offset = mohawk_receiver_offset(T)
    sender.accept_response(
        header, content=body, content_type=CONTENT_TYPE, localtime_offset_in_seconds=offset
    )
    with pytest.raises(MisComputedContentHash):
        sender.accept_response(
            header,
            content=body + b"!",
            content_type=CONTENT_TYPE,
            localtime_offset_in_seconds=offset,
        )
    with pytest.raises(MacMismatch):
        sender.accept_response(
            header.replace('mac="', 'mac="A'),
            content=body,
            content_type=CONTENT_TYPE,
            localtime_offset_in_seconds=offset,
        )


def test_mohawk_server_authorization_is_accepted_by_our_client() -> None:
    receiver = mohawk.Receiver(
        lambda _id: mohawk_creds(),
        ours(nonce="abc"),
        URL,
        "POST",
        content=PAYLOAD,
        content_type=CONTENT_TYPE,
        seen_nonce=lambda *_: False,
        localtime_offset_in_seconds=mohawk_receiver_offset(T),
    )
    body = b"\x08\x02answer"
    header = receiver.respond(content=body, content_type=CONTENT_TYPE, ext="e")
    check: dict[str, Any] = dict(ts=T, nonce="abc", resource=RESOURCE, host=HOST, port=PORT)
    assert verify_server_authorization(header, KEY, payload=body, **check) == "e"
    with pytest.raises(ServerAuthenticationError, match="payload"):
        verify_server_authorization(header, KEY, payload=body + b"!", **check)
    with pytest.raises(ServerAuthenticationError, match="mac"):
        verify_server_authorization(header, OTHER_KEY, payload=body, **check)
    with pytest.raises(ServerAuthenticationError, match="mac"):
        verify_server_authorization(header, KEY, payload=body, **{**check, "nonce": "abd"})
    bare = receiver.respond(always_hash_content=False, ext="e")
    with pytest.raises(ServerAuthenticationError, match="Missing response hash"):
        verify_server_authorization(bare, KEY, payload=body, **check)
    with pytest.raises(ServerAuthenticationError, match="Invalid"):
        verify_server_authorization('Hawk mac="x", id="y"', KEY, payload=body, **check)


async def test_verified_request_repr_hides_the_key() -> None:
    verified = await verifier().verify(mohawk_header(), resource=RESOURCE, payload=PAYLOAD)
    assert repr(KEY) not in repr(verified)
    assert "key" not in repr(verified)
