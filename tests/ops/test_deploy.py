"""deploy/ and docs/configuration.md stay true to the code.

No Docker engine or systemd runs here, so the Dockerfile, the compose file
and the unit are checked as files: hadolint for the Dockerfile, PyYAML plus
structural checks for compose, ``systemd-analyze verify`` (where installed)
plus structural checks for the unit. The Dockerfile's health-check one-liner
is run for real against a server.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from rossby.config import SECRET_KEYS, Settings, load_settings
from rossby.configdoc import DOC, render
from rossby.store import parse_store_url
from tests.ops.helpers import migrated_sqlite
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REGIONS = {
    "dc1": DEPLOY / "config" / "region-dc1.toml",
    "dc2": DEPLOY / "config" / "region-dc2.toml",
}
KEYS = [f.name for f in fields(Settings)]


def _setting_of_env(var: str) -> str | None:
    """The setting a ROSSBY_* variable sets (None: ROSSBY_CONFIG)."""
    name = var.removeprefix("ROSSBY_").lower()
    if name == "config":
        return None
    if name.endswith("_file") and name.removesuffix("_file") in SECRET_KEYS:
        return name.removesuffix("_file")
    return name


# -- docs/configuration.md ---------------------------------------------------


def test_configuration_doc_lists_every_setting_as_generated() -> None:
    text = DOC.read_text()
    assert render(text) == text, "docs/configuration.md is stale: python -m rossby.configdoc"
    for key in KEYS:
        assert f"| `{key}` |" in text


# -- the region files ----------------------------------------------------------


def _key_lines(text: str) -> dict[str, tuple[int, bool, str]]:
    """key -> (line index, active, "=" or ":") for `key = ...`, `# key = ...`
    (a default) and `# key: explanation` (a secret's pointer)."""
    found: dict[str, tuple[int, bool, str]] = {}
    for i, line in enumerate(text.splitlines()):
        m = re.match(r"^(#\s*)?([a-z_]+)\s*([=:])", line)
        if m and m.group(2) in KEYS and m.group(2) not in found:
            found[m.group(2)] = (i, m.group(1) is None, m.group(3))
    return found


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_region_file_documents_every_setting_and_loads(region: str, tmp_path: Path) -> None:
    text = REGIONS[region].read_text()
    lines = text.splitlines()
    found = _key_lines(text)
    assert sorted(found) == sorted(KEYS), f"missing: {sorted(set(KEYS) - set(found))}"
    for key, (i, active, sep) in found.items():
        if sep == "=":
            above = lines[i - 1].strip()
            assert above.startswith("#"), f"{key} has no comment above it"
            assert not _key_lines(above), f"{key}: the line above is a setting, not a comment"
        if key in SECRET_KEYS:
            assert not active, f"{key} is set in {REGIONS[region].name}"
    data = tomllib.loads(text)
    assert not any(k.endswith("_file") for k in data), "secrets come from the environment"
    # Load it as the server would; TLS files are made up here.
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        if data.get(name):
            made = tmp_path / Path(data[name]).name
            made.write_text("pem")
            text = text.replace(data[name], str(made))
    config = tmp_path / "rossby.toml"
    config.write_text(text)
    settings = load_settings(environ={}, config_file=str(config))
    assert settings.region == region
    store = parse_store_url(settings.store)
    assert store.param("local_dc") == region
    assert store.hosts == (f"cassandra-{region}",)


def test_regions_differ_only_where_they_must() -> None:
    one, two = (tomllib.loads(p.read_text()) for p in REGIONS.values())
    assert one.keys() == two.keys()
    differ = {k for k in one if one[k] != two[k]}
    assert differ == {"public_host", "store", "region", "smtp_username", "webhook_url"}
    assert parse_store_url(one["store"]).param("replication") == parse_store_url(
        two["store"]
    ).param("replication")


# -- compose ----------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_two_regions_each_on_its_own_datacenter() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {
        "cassandra-dc1",
        "cassandra-dc2",
        "migrate",
        "rossby-dc1",
        "rossby-dc2",
    }
    host_ports: list[str] = []
    for region, config in REGIONS.items():
        cassandra = services[f"cassandra-{region}"]
        assert cassandra["image"].startswith("cassandra:5")
        assert cassandra["environment"]["CASSANDRA_DC"] == region
        assert cassandra["environment"]["CASSANDRA_ENDPOINT_SNITCH"] == (
            "GossipingPropertyFileSnitch"
        )
        server = services[f"rossby-{region}"]
        assert server["command"] == ["serve"]
        mount = f"./config/{config.name}:/etc/rossby/rossby.toml:ro"
        assert mount in server["volumes"]
        assert server["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert server["depends_on"][f"cassandra-{region}"]["condition"] == "service_healthy"
        host_ports += [p.rsplit(":", 1)[0] for p in server["ports"]]
        # The store of the region file names this region's Cassandra service.
        store = parse_store_url(tomllib.loads(config.read_text())["store"])
        assert store.hosts == (f"cassandra-{region}",)
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"


def test_compose_references_only_what_exists() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert context == ROOT
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: secret {secret}"
        for dependency in service.get("depends_on", {}):
            assert dependency in compose["services"], f"{name}: {dependency}"
        for var in (service.get("environment") or {}) if name.startswith(("rossby", "mig")) else ():
            setting = _setting_of_env(var)
            assert setting is None or setting in KEYS, f"{name}: {var} is no setting"
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # created by the operator, not committed


# -- Dockerfile --------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    steps = _instructions()
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) >= 2
    final = steps[stages[-1] :]
    users = [arg for word, arg in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(word == "COPY" and arg.startswith("--from=build") for word, arg in final)
    assert [arg for word, arg in final if word == "ENTRYPOINT"] == ['["rossby"]']
    assert any(word == "EXPOSE" and "1205" in arg.split() for word, arg in final)
    for word, arg in steps:
        if word == "COPY" and not arg.startswith("--from"):
            for source in shlex.split(arg)[:-1]:
                assert (ROOT / source).exists(), source
        if word == "ENV":
            for var in re.findall(r"(ROSSBY_[A-Z_]+)=", arg):
                assert _setting_of_env(var) in KEYS, var


def _healthcheck_code() -> str:
    health = next(arg for word, arg in _instructions() if word == "HEALTHCHECK")
    command = json.loads(health[health.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    return str(command[2])


def test_dockerfile_healthcheck_probes_a_real_server(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with ServerProcess(tmp_path, url) as server:
        code = _healthcheck_code().replace("127.0.0.1:1205", server.target)
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        server.stop()
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert probe.returncode != 0  # nothing listens: unhealthy


# -- systemd ----------------------------------------------------------------------


def test_systemd_unit(tmp_path: Path) -> None:
    unit = DEPLOY / "systemd" / "rossby.service"
    lines = [line.strip() for line in unit.read_text().splitlines()]
    entries = [tuple(line.split("=", 1)) for line in lines if "=" in line and line[0] != "#"]
    values: dict[str, list[str]] = {}
    for key, value in entries:
        values.setdefault(key, []).append(value)
    assert values["ExecStart"] == ["/opt/rossby/bin/rossby serve --config /etc/rossby/rossby.toml"]
    assert values["KillMode"] == ["mixed"] and values["KillSignal"] == ["SIGTERM"]
    assert float(values["TimeoutStopSec"][0]) > Settings().grace + 10
    assert values["User"] == ["rossby"]
    for env in values["Environment"]:
        var = env.split("=", 1)[0]
        assert _setting_of_env(var) in KEYS, var
    credentials = {v.split(":", 1)[0] for v in values["LoadCredential"]}
    for env in values["Environment"]:
        if "%d/" in env:
            assert env.rsplit("/", 1)[1] in credentials
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # present on the development machine; not required
        copy = tmp_path / "rossby.service"
        copy.write_text(unit.read_text().replace("/opt/rossby/bin/rossby", "/bin/true"))
        done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
