"""Device linking: a passphrase shown by the old device, typed (or scanned)
on the new one, and what both derive from it. Byte formats in
docs/envelope.md ("Device linking").

The passphrase is 100 random bits shown as four groups of five Crockford
base32 characters (``7KQ2M-9XHDF-...``). From it and the offer id both
devices derive::

    session  = scrypt(passphrase, salt = "rossby/v1/link" 0x00 || offer id (16),
                      N = 2^14, r = 8, p = 1, length = 32)
    verifier = HKDF-SHA256(session, salt = "rossby/v1/link", info = "rossby/v1/link-auth")
    mac key  = HKDF-SHA256(session, salt = "rossby/v1/link", info = "rossby/v1/link-mac")

The server gets the verifier only. It checks the new device's ``proof``
(HMAC under the verifier) to count wrong passphrases; it cannot compute the
``mac`` (HMAC under the mac key) that the old device checks before it
signs the new device's keys, nor the ``confirm`` the new device checks to
know the approval came from the passphrase's holder. Both HKDF outputs are
one-way, so the verifier reveals neither the mac key nor the passphrase.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Private,
    Ed25519Public,
    Rng,
    ed25519_private,
    ed25519_public,
    random_bytes,
)

LABEL = b"rossby/v1/link"
JOIN_LABEL = b"rossby/v1/link-join\x00"
CONFIRM_LABEL = b"rossby/v1/link-confirm\x00"
COMPLETE_LABEL = b"rossby/v1/link-complete\x00"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
GROUPS = 4
GROUP_LENGTH = 5
_READS_AS = {"O": "0", "I": "1", "L": "1"}
URI_SCHEME = "rossby"


@dataclass(frozen=True, slots=True)
class LinkKeys:
    verifier: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)


def new_passphrase(*, rng: Rng | None = None) -> str:
    """100 random bits as ``XXXXX-XXXXX-XXXXX-XXXXX``."""
    raw = int.from_bytes(random_bytes(rng, 13), "big") >> 4  # 100 bits
    chars = []
    for _ in range(GROUPS * GROUP_LENGTH):
        chars.append(ALPHABET[raw & 31])
        raw >>= 5
    text = "".join(reversed(chars))
    return "-".join(text[i : i + GROUP_LENGTH] for i in range(0, len(text), GROUP_LENGTH))


def normalize_passphrase(text: str) -> str:
    """Upper-case, separators dropped, O/I/L read as 0/1; ``ValueError`` if
    anything else is off (so a typo fails locally, not as a wasted attempt)."""
    out = []
    for ch in text.strip().upper():
        if ch in "- ":
            continue
        ch = _READS_AS.get(ch, ch)
        if ch not in ALPHABET:
            raise ValueError(f"{ch!r} is not part of a link passphrase")
        out.append(ch)
    if len(out) != GROUPS * GROUP_LENGTH:
        raise ValueError(f"a link passphrase has {GROUPS * GROUP_LENGTH} characters")
    return "".join(out)


def derive_link_keys(passphrase: str, offer_id: uuid.UUID) -> LinkKeys:
    session = Scrypt(
        salt=LABEL + b"\x00" + offer_id.bytes,
        length=KEY_BYTES,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
    ).derive(normalize_passphrase(passphrase).encode("ascii"))

    def expand(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=LABEL, info=info).derive(
            session
        )

    return LinkKeys(expand(b"rossby/v1/link-auth"), expand(b"rossby/v1/link-mac"))


def join_transcript(
    offer_id: uuid.UUID,
    device_id: uuid.UUID,
    encryption_key: bytes,
    signing_key: bytes,
    key_signature: bytes,
    device_name: str,
) -> bytes:
    """What ``proof`` and ``mac`` cover: the new device and its keys."""
    return (
        JOIN_LABEL
        + offer_id.bytes
        + device_id.bytes
        + encryption_key
        + signing_key
        + key_signature
        + device_name.encode("utf-8")
    )


def confirm_message(
    offer_id: uuid.UUID,
    box_id: uuid.UUID,
    approver_device_id: uuid.UUID,
    approver_signing_key: bytes,
    device_id: uuid.UUID,
) -> bytes:
    """What ``confirm`` covers: which box and which of its devices approved."""
    return (
        CONFIRM_LABEL
        + offer_id.bytes
        + box_id.bytes
        + approver_device_id.bytes
        + approver_signing_key
        + device_id.bytes
    )


def complete_message(offer_id: uuid.UUID, device_id: uuid.UUID) -> bytes:
    """What the new device signs to collect its credentials."""
    return COMPLETE_LABEL + offer_id.bytes + device_id.bytes


def sign_complete(
    signing_private: Ed25519Private, offer_id: uuid.UUID, device_id: uuid.UUID
) -> bytes:
    """The new device's ``CompleteLinkRequest.signature``."""
    return ed25519_private(signing_private).sign(complete_message(offer_id, device_id))


def verify_complete(
    signing_public: Ed25519Public, offer_id: uuid.UUID, device_id: uuid.UUID, signature: bytes
) -> bool:
    """True only for a valid signature; malformed input answers False."""
    try:
        if len(signature) != SIGNATURE_BYTES:
            return False
        ed25519_public(signing_public).verify(signature, complete_message(offer_id, device_id))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def mac_ok(key: bytes, message: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, message), bytes(tag))


@dataclass(frozen=True, slots=True)
class LinkCode:
    """What the old device shows: the server, the offer and the passphrase.

    ``uri`` is the QR payload, e.g.
    ``rossby://link?v=1&server=10.0.0.5%3A1205&offer=<uuid>&code=7KQ2M-9XHDF-...``.
    """

    server: str
    offer_id: uuid.UUID
    passphrase: str = field(repr=False)

    @property
    def uri(self) -> str:
        return (
            f"{URI_SCHEME}://link?v=1&server={quote(self.server, safe='')}"
            f"&offer={self.offer_id}&code={self.passphrase}"
        )

    @property
    def text(self) -> str:
        """For typing: ``<offer id> <passphrase>``."""
        return f"{self.offer_id} {self.passphrase}"


def parse_link_code(text: str, *, server: str | None = None) -> LinkCode:
    """A ``rossby://link?...`` URI, or ``<offer id> <passphrase>`` typed by
    hand (then ``server`` must be given). ``ValueError`` when malformed."""
    text = text.strip()
    if text.startswith(f"{URI_SCHEME}://"):
        parts = urlsplit(text)
        query = parse_qs(parts.query)
        if parts.netloc != "link" or query.get("v") != ["1"]:
            raise ValueError("not a Rossby link code")
        try:
            where = query["server"][0]
            offer = uuid.UUID(query["offer"][0])
            code = query["code"][0]
        except (KeyError, IndexError):
            raise ValueError("the link code misses a part") from None
        normalize_passphrase(code)
        return LinkCode(server or where, offer, code)
    offer_text, _, code = text.partition(" ")
    if server is None:
        raise ValueError("give the server address with a typed link code")
    offer = uuid.UUID(offer_text.strip())
    normalize_passphrase(code)
    return LinkCode(server, offer, code.strip())


__all__ = [
    "LinkCode",
    "LinkKeys",
    "complete_message",
    "confirm_message",
    "derive_link_keys",
    "join_transcript",
    "mac",
    "mac_ok",
    "new_passphrase",
    "normalize_passphrase",
    "parse_link_code",
    "sign_complete",
    "verify_complete",
]
