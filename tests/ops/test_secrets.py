"""Generated dev secrets (rossby.server.secrets): a damaged key file is
refused at start-up, never used as an empty key nor silently replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rossby.config import load_settings
from rossby.errors import ConfigError
from rossby.server.secrets import load_secret, secret_path
from tests.ops.helpers import migrated_sqlite
from tests.serverproc import free_port, rossby


@pytest.mark.parametrize("content", ["", "\n", "abcd\n", "not hex at all\n"])
def test_rossby_serve_refuses_a_key_file_without_a_usable_key(tmp_path: Path, content: str) -> None:
    url = migrated_sqlite(tmp_path)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    damaged = state / "server-secret.key"  # where serve generates it in dev
    damaged.write_text(content)
    done = rossby(
        "serve",
        "--store",
        url,
        "--state-dir",
        str(state),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--metrics-listen",
        "",
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"invalid setting server_secret: {damaged} holds no usable key" in done.stderr
    assert "Traceback" not in done.stderr
    assert damaged.read_text() == content  # not replaced


def test_a_generated_key_is_created_whole_and_reused(tmp_path: Path) -> None:
    settings = load_settings({"state_dir": str(tmp_path)}, environ={})
    first = load_secret(settings, "contact_hash_key")
    path = secret_path(settings, "contact_hash_key")
    assert len(first) == 32 and path.read_text() == first.hex() + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(settings, "contact_hash_key") == first
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    path.write_text("")
    with pytest.raises(ConfigError, match="holds no usable key"):
        load_secret(settings, "contact_hash_key")
    os.unlink(path)  # what the error says to do when nothing depends on it
    assert len(load_secret(settings, "contact_hash_key")) == 32
