"""A device's home directory on disk: create it, unlock it, rewrite its keyfile.

The home holds the keyfile (``device.key``, scrypt under the passphrase),
the state encrypted under a key derived from the device keys
(``state.bin``) and the lock. Everything here is blocking file work, run
in a thread by ``Session``; nothing here talks to a server.

Order matters for crash safety: a new home gets its state before its
keyfile (the keyfile marks the home as used), and a key rotation stages
the new keyfile (``device.key.next``) before the state moves to the new
keys, so a crash in between is finished on the next unlock.
"""

from __future__ import annotations

import os
from pathlib import Path

from rossby.client.errors import AlreadyInitialized, NotInitialized, WrongPassphrase
from rossby.client.state import (
    KEYFILE,
    NEXT_KEYFILE,
    STATE,
    ClientState,
    HomeLock,
    decode_state,
    encode_state,
    make_home,
    state_key,
    write_private,
)
from rossby.crypto import DeviceKeyfile, KeyfileError, decode_keyfile, read_keyfile
from rossby.crypto.keyfile import rewrite_cost, write_keyfile


def has_device(home: Path) -> bool:
    return (home / KEYFILE).exists()


def initialize_home(
    home: Path, passphrase: str, keyfile: DeviceKeyfile, state: ClientState, scrypt_n: int
) -> HomeLock:
    """Write a new device's state, then its keyfile (the keyfile marks the home as used)."""
    make_home(home)
    lock = HomeLock(home)
    lock.acquire()
    try:
        if has_device(home):
            raise AlreadyInitialized(f"{home} already holds a device; use another --home")
        write_private(home / STATE, encode_state(state, state_key(keyfile.keys, keyfile.device_id)))
        write_keyfile(home / KEYFILE, keyfile, passphrase, scrypt_n=scrypt_n)
    except BaseException:
        lock.release()
        raise
    return lock


def load_home(home: Path, passphrase: str) -> tuple[DeviceKeyfile, ClientState, HomeLock]:
    if not has_device(home):
        raise NotInitialized(f"no Rossby device in {home}: run `rossby client init` first")
    lock = HomeLock(home)
    lock.acquire()
    try:
        try:
            keyfile = decode_keyfile((home / KEYFILE).read_bytes(), passphrase)
        except KeyfileError:
            raise WrongPassphrase(
                f"cannot open {home / KEYFILE}: wrong passphrase, or the file is damaged"
            ) from None
        try:
            raw_state = (home / STATE).read_bytes()
        except FileNotFoundError:
            raise NotInitialized(f"{home / STATE} is missing; initialize a new home") from None
        try:
            state = decode_state(raw_state, state_key(keyfile.keys, keyfile.device_id))
        except WrongPassphrase:
            keyfile, state = _finish_rotation(home, passphrase, keyfile, raw_state)
    except BaseException:
        lock.release()
        raise
    return keyfile, state, lock


def _finish_rotation(
    home: Path, passphrase: str, keyfile: DeviceKeyfile, raw_state: bytes
) -> tuple[DeviceKeyfile, ClientState]:
    """A key rotation stopped after the state moved to the new keys but
    before ``device.key`` did: finish it (rename the staged keyfile)."""
    nxt = home / NEXT_KEYFILE
    try:
        staged = decode_keyfile(nxt.read_bytes(), passphrase)
    except (FileNotFoundError, KeyfileError):
        raise WrongPassphrase(
            "the state file does not open: it is damaged, or belongs to another device"
        ) from None
    if staged.device_id != keyfile.device_id:
        raise WrongPassphrase("the staged keyfile belongs to another device")
    state = decode_state(raw_state, state_key(staged.keys, staged.device_id))
    promote_staged(home)
    return staged, state


def rewrite_keyfile(
    home: Path, keyfile: DeviceKeyfile, passphrase: str, minimum: int, *, staged: bool = False
) -> None:
    """Replace the keyfile (or, ``staged``, write the rotation's next one) at
    the current file's own cost raised to ``minimum`` (``rewrite_cost``)."""
    path = home / KEYFILE
    cost = rewrite_cost(path.read_bytes(), minimum)
    write_keyfile(home / NEXT_KEYFILE if staged else path, keyfile, passphrase, scrypt_n=cost)


def read_staged(home: Path, passphrase: str) -> DeviceKeyfile | None:
    """The keyfile an unfinished rotation staged, if any (a retry resumes with it)."""
    try:
        return read_keyfile(home / NEXT_KEYFILE, passphrase)
    except FileNotFoundError:
        return None


def promote_staged(home: Path) -> None:
    """The rotation's last step: the staged keyfile becomes ``device.key``."""
    os.replace(home / NEXT_KEYFILE, home / KEYFILE)


__all__ = [
    "has_device",
    "initialize_home",
    "load_home",
    "promote_staged",
    "read_staged",
    "rewrite_keyfile",
]
