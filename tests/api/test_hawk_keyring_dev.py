"""The development keyring: generated once into the state directory."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rossby.client.hawk import HawkSigner
from tests.api.device import Device, email


async def test_a_dev_server_generates_its_keyring_once(make_api: Callable[..., Any]) -> None:
    """No ``hawk_keys`` set: the first server writes one into the state
    directory, the next one (same directory) uses the same."""
    first = await make_api()
    alice = await Device(first, email("dev")).join()
    state = Path(first.server.settings.state_dir) / "hawk-keys.key"
    assert state.stat().st_mode & 0o777 == 0o600
    second = await make_api()
    assert alice.signer is not None
    again = copy.copy(alice)
    again.api = second
    again.signer = HawkSigner(
        alice.signer.credentials_id, alice.hawk_key, "127.0.0.1", second.server.port
    )
    await again.fetch()
    assert state.read_text().startswith("1:")
