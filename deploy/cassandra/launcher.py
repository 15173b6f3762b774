#!/usr/bin/env python3
"""Run a real Apache Cassandra 5.0.x cluster on loopback IPs, without Docker.

Jars come from Maven Central (``org.apache.cassandra:cassandra-all`` and its
runtime dependencies, resolved by ``deploy/cassandra/pom.xml``) into a cache
outside the repository; each node is a plain ``java ... CassandraDaemon``
process on 127.0.0.N.

Stdlib only. Usable as a script::

    python3 deploy/cassandra/launcher.py fetch
    python3 deploy/cassandra/launcher.py start --nodes 1 --dcs 1
    python3 deploy/cassandra/launcher.py start --nodes 2 --dcs 2
    python3 deploy/cassandra/launcher.py --dir var/c3 start --nodes 3 --first 3   # 127.0.0.3-5
    python3 deploy/cassandra/launcher.py status
    python3 deploy/cassandra/launcher.py stop-node 2      # fault tests
    python3 deploy/cassandra/launcher.py start-node 2     # restart, keeps data
    python3 deploy/cassandra/launcher.py stop
    .venv/bin/python deploy/cassandra/launcher.py --dir var/cs start --first 6 --auth --tls

``--auth`` turns on ``PasswordAuthenticator`` (login ``cassandra`` /
``cassandra``, the superuser Cassandra creates; ``CassandraAuthorizer``, so
roles and grants apply). ``--tls`` requires TLS from CQL clients: it makes a
CA and a certificate per node (``<dir>/tls/``, PEM, read by Cassandra's
``PEMBasedSslContextFactory``: no keytool, no JKS); clients trust
``<dir>/tls/ca.pem``. ``--tls-client-auth`` also requires a client
certificate signed by that CA (``<dir>/tls/client.pem`` and ``client.key``
are made for it). Making certificates needs the ``cryptography`` package
(the project's virtualenv has it); without these options the launcher is
stdlib only and the cluster is the plain one the test suite uses.

and importable by file path (e.g. from a pytest fixture)::

    spec = importlib.util.spec_from_file_location("cassandra_launcher", path)
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    nodes = launcher.start(nodes=2, dcs=2, dir=tmp_path / "cassandra")
    ...
    launcher.stop(tmp_path / "cassandra")

Layout of a runtime dir (default ``$ROSSBY_CASSANDRA_HOME`` or ``<repo>/var/cassandra``)::

    cluster.json                  version, node count, first index, DCs, heap (used by start_node)
    nodeN/conf/{cassandra.yaml,cassandra-rackdc.properties,logback.xml,triggers/}
    nodeN/{data,commitlog,hints,saved_caches,cdc_raw,tmp}
    nodeN/logs/{system.log,stdout.log}
    nodeN/pid

Node i listens on 127.0.0.i: CQL 9042, storage 7000, JMX 7199 + 100*(i-1)
(JMX always binds 127.0.0.1). A cluster's node indexes run from ``first``
(default 1) to ``first + nodes - 1``, so two clusters with disjoint indexes can
run side by side (the test suite's 2-DC cluster on 127.0.0.1-2, a 3-node one on
127.0.0.3-5); node commands (start-node, stop-node) take the index. Seed: the
first node. With ``dcs=2`` (or 3) nodes are assigned round-robin from the first:
dc1, dc2, dc1, ... (dc1, dc2, dc3, dc1, ...).

A WAN between the DCs (``--wan-latency-ms 40 [--wan-jitter-ms 5]
[--wan-bandwidth-kbytes N]``, deploy/wan/, docs/wan.md): a Toxiproxy (API on
127.0.2.FIRST:8474, state in ``<dir>/toxiproxy/``) with a proxy per node on
127.0.1.i:7000, which is the node's ``broadcast_address`` and the seed's
address; ``prefer_local=true`` keeps a DC's own traffic on the listen
addresses, so only inter-DC traffic crosses the proxies. CQL clients still
connect to 127.0.0.i. ``stop`` stops the Toxiproxy too; ``partition DC``,
``heal DC`` and ``set-latency MS`` change the links of a running cluster::

    python3 deploy/cassandra/launcher.py start --nodes 3 --dcs 3 --wan-latency-ms 40
    python3 deploy/cassandra/launcher.py partition dc2
    python3 deploy/cassandra/launcher.py heal dc2
"""

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# deploy/wan (Toxiproxy and the inter-DC links) and deploy/fetchcache.py sit
# beside this script's dir.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fetchcache import Log, cache_root, flock, stderr_log
from wan import links, toxiproxy

DEFAULT_VERSION = "5.0.9"
"""cassandra-all version; keep in sync with <cassandra.version> in pom.xml."""

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
POM = HERE / "pom.xml"
JVM_OPTIONS_FILE = HERE / "jvm17.options"

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
MAX_NODES = 9
MAX_INDEX = 99
"""Highest node index: 127.0.0.99, JMX port 16999."""
NATIVE_PORT = 9042
STORAGE_PORT = 7000
JMX_BASE_PORT = 7199
SEED_IP = "127.0.0.1"
DEFAULT_HEAP_MIN = "256M"
DEFAULT_HEAP_MAX = "1G"
DEFAULT_START_TIMEOUT = 180.0
DEFAULT_STOP_TIMEOUT = 60.0
RING_DELAY_MS = 5000
SHUTDOWN_ANNOUNCE_MS = 1000
CQL_READY_LINE = "Starting listening for CQL clients"
STARTUP_FAILED_MARKERS = ("Exception encountered during startup", "encountered during startup")
MARKER_NAME = "fetch.complete"


class CassandraError(RuntimeError):
    """A fetch/start/stop step failed; the message carries the relevant log tail."""


# --------------------------------------------------------------------------- paths


def install_dir(version: str = DEFAULT_VERSION) -> Path:
    return cache_root() / f"cassandra-{version}"


def lib_dir(version: str = DEFAULT_VERSION) -> Path:
    return install_dir(version) / "lib"


def default_dir() -> Path:
    env = os.environ.get("ROSSBY_CASSANDRA_HOME")
    p = Path(env).expanduser() if env else Path("var/cassandra")
    return p if p.is_absolute() else REPO_ROOT / p


def _runtime_dir(dir: str | os.PathLike[str] | None) -> Path:
    return (Path(dir).expanduser() if dir is not None else default_dir()).absolute()


def node_ip(i: int) -> str:
    return f"127.0.0.{i}"


def jmx_port(i: int) -> int:
    return JMX_BASE_PORT + 100 * (i - 1)


def node_dc(i: int, dcs: int, first: int = 1) -> str:
    return f"dc{(i - first) % dcs + 1}"


# --------------------------------------------------------------------------- fetch


def is_fetched(version: str = DEFAULT_VERSION) -> bool:
    inst = install_dir(version)
    jar = lib_dir(version) / f"cassandra-all-{version}.jar"
    return (inst / MARKER_NAME).is_file() and jar.is_file()


def fetch(version: str = DEFAULT_VERSION, *, log: Log = stderr_log) -> Path:
    """Download cassandra-all <version> + runtime deps into the cache; return the lib dir.

    Skipped when a previous fetch completed (marker file present). A half-finished
    download (no marker) is wiped and redone. Safe to call concurrently.
    """
    inst = install_dir(version)
    lib = lib_dir(version)
    if is_fetched(version):
        return lib
    with flock(cache_root() / f".cassandra-{version}.lock"):
        if is_fetched(version):
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise CassandraError("mvn not found on PATH (apt-get install maven)")
        if inst.exists():
            shutil.rmtree(inst)
        lib.mkdir(parents=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            f"-Dcassandra.version={version}",
            "-Djmc5.path=/tmp",
            "-Djmc6.path=/tmp",
            "-Dvisualvm.path=/tmp",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ]
        log(f"fetching cassandra-all {version} from Maven Central into {lib}")
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        elapsed = time.monotonic() - t0
        jar = lib / f"cassandra-all-{version}.jar"
        if proc.returncode != 0 or not jar.is_file() or not list(lib.glob("jamm-*.jar")):
            raise CassandraError(
                f"mvn copy-dependencies failed (rc={proc.returncode}) "
                f"for cassandra-all {version}:\n" + _tail_text(proc.stdout, 40)
            )
        jars = sorted(p.name for p in lib.glob("*.jar"))
        done = {"version": version, "seconds": round(elapsed, 1), "jars": jars}
        (inst / MARKER_NAME).write_text(json.dumps(done, indent=1) + "\n")
        log(f"fetched {len(jars)} jars in {elapsed:.1f}s")
        return lib


# --------------------------------------------------------------------------- config files


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def balanced_tokens(nodes: int, dcs: int, first: int = 1) -> dict[int, int]:
    """One Murmur3 token per node index, evenly spread within each DC, +100 offset per DC
    (like ccm)."""
    out: dict[int, int] = {}
    indexes = range(first, first + nodes)
    for d in range(dcs):
        members = [i for i in indexes if (i - first) % dcs == d]
        step = 2**64 // max(len(members), 1)
        for k, i in enumerate(members):
            out[i] = -(2**63) + k * step + d * 100
    return out


def _security_yaml(auth: bool, tls: dict[str, str] | None) -> str:
    """The authenticator and client encryption sections (defaults: off)."""
    if auth:
        out = "authenticator: PasswordAuthenticator\nauthorizer: CassandraAuthorizer\n"
    else:
        out = "authenticator: AllowAllAuthenticator\nauthorizer: AllowAllAuthorizer\n"
    if tls:
        out += (
            "client_encryption_options:\n"
            "  enabled: true\n"
            "  optional: false\n"
            "  ssl_context_factory:\n"
            "    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory\n"
            f"  keystore: {tls['keystore']}\n"
        )
        if tls.get("truststore"):
            out += f"  truststore: {tls['truststore']}\n  require_client_auth: true\n"
        else:
            out += "  require_client_auth: false\n"
    return out


def render_yaml(
    *,
    cluster_name: str,
    node_dir: Path,
    ip: str,
    token: int,
    seed: str = SEED_IP,
    auth: bool = False,
    tls: dict[str, str] | None = None,
    broadcast: str | None = None,
) -> str:
    d = node_dir
    broadcast_line = f"broadcast_address: {broadcast}\n" if broadcast else ""
    return f"""\
# Generated by deploy/cassandra/launcher.py -- minimal Cassandra 5.0 dev/test config.
cluster_name: {_yaml_str(cluster_name)}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: GossipingPropertyFileSnitch
num_tokens: 1
initial_token: '{token}'
auto_bootstrap: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seed}:{STORAGE_PORT}"
listen_address: {ip}
{broadcast_line}rpc_address: {ip}
storage_port: {STORAGE_PORT}
native_transport_port: {NATIVE_PORT}
start_native_transport: true
data_file_directories:
  - {d / "data"}
commitlog_directory: {d / "commitlog"}
saved_caches_directory: {d / "saved_caches"}
hints_directory: {d / "hints"}
cdc_raw_directory: {d / "cdc_raw"}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
{_security_yaml(auth, tls)}role_manager: CassandraRoleManager
auto_snapshot: false
storage_compatibility_mode: NONE
paxos_variant: v2
disk_access_mode: standard
# small footprint for a 2-core / shared CI box
concurrent_compactors: 1
memtable_flush_writers: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
row_cache_size: 0MiB
counter_cache_size: 0MiB
file_cache_size: 32MiB
networking_cache_size: 16MiB
"""


def render_rackdc(dc: str, rack: str = "rack1", prefer_local: bool = False) -> str:
    return f"dc={dc}\nrack={rack}\n" + ("prefer_local=true\n" if prefer_local else "")


LOGBACK_XML = """\
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <append>true</append>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>WARN</level></filter>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
"""

NODE_SUBDIRS = (
    "data",
    "commitlog",
    "hints",
    "saved_caches",
    "cdc_raw",
    "logs",
    "tmp",
    "conf/triggers",
)


def jvm_options(path: Path = JVM_OPTIONS_FILE) -> list[str]:
    opts: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            opts.extend(line.split())
    return opts


# --------------------------------------------------------------------------- nodes


@dataclasses.dataclass
class Node:
    index: int
    dir: Path
    dc: str
    rack: str = "rack1"
    pid: int | None = None
    startup_seconds: float | None = None
    #: The cluster's certificates when it requires TLS (``start(tls=True)``).
    tls_dir: Path | None = None
    #: The address peers know the node by, when it differs from its IP (a WAN proxy's).
    broadcast: str | None = None

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def ip(self) -> str:
        return node_ip(self.index)

    @property
    def host(self) -> str:
        return self.ip

    @property
    def gossip_ip(self) -> str:
        """The address gossip and the logs name the node by."""
        return self.broadcast or self.ip

    @property
    def native_port(self) -> int:
        return NATIVE_PORT

    @property
    def storage_port(self) -> int:
        return STORAGE_PORT

    @property
    def jmx_port(self) -> int:
        return jmx_port(self.index)

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "system.log"

    @property
    def stdout_file(self) -> Path:
        return self.dir / "logs" / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    def is_running(self) -> bool:
        pid = _read_pid(self.pid_file)
        return pid is not None and _is_our_process(pid, self.dir)

    def cql_up(self, timeout: float = 2.0) -> bool:
        return _cql_ready(self.ip, self.native_port, timeout, self.tls_dir)


# Popen objects of nodes started by this process, so they can be reaped (no zombies).
_PROCS: dict[int, subprocess.Popen[bytes]] = {}


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    proc = _PROCS.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _PROCS.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _forget(pid: int) -> None:
    """pid is dead (or a zombie): reap it if it is our child, drop its Popen."""
    proc = _PROCS.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _is_our_process(pid: int, node_dir: Path) -> bool:
    """pid is alive AND is the CassandraDaemon of node_dir (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    want = f"-Dcassandra.storagedir={node_dir}".encode()
    return b"org.apache.cassandra.service.CassandraDaemon" in cmdline and want in cmdline


def _cql_ready(
    ip: str, port: int = NATIVE_PORT, timeout: float = 2.0, tls_dir: Path | None = None
) -> bool:
    """True if a CQL native-protocol OPTIONS request gets a SUPPORTED reply
    (OPTIONS needs no login). With ``tls_dir`` it goes over TLS, unverified
    (this only asks whether the node listens), with the client certificate
    there if the cluster asks for one."""
    try:
        with contextlib.ExitStack() as stack:
            s = stack.enter_context(socket.create_connection((ip, port), timeout=timeout))
            if tls_dir is not None:
                probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                probe.check_hostname = False
                probe.verify_mode = ssl.CERT_NONE
                if (tls_dir / "client.pem").is_file():
                    probe.load_cert_chain(tls_dir / "client.pem", tls_dir / "client.key")
                s = stack.enter_context(probe.wrap_socket(s))
            s.settimeout(timeout)
            # v4 request header: version, flags, stream id, opcode OPTIONS (0x05), body length 0
            s.sendall(struct.pack(">BBhBI", 0x04, 0, 1, 0x05, 0))
            hdr = b""
            while len(hdr) < 9:
                chunk = s.recv(9 - len(hdr))
                if not chunk:
                    return False
                hdr += chunk
            return hdr[0] & 0x80 != 0 and hdr[4] == 0x06  # response + SUPPORTED
    except OSError:
        return False


def _port_in_use(ip: str, port: int) -> bool:
    # SO_REUSEADDR like Java's ServerSocket: TIME_WAIT leftovers of a stopped node are
    # not "in use", only a live listener is.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _check_ports_free(indexes: Iterable[int], wait: float = 10.0) -> None:
    """Raise if a node port has a live listener. Retries for `wait` seconds: the
    sockets of a just-stopped JVM can linger briefly after the process is gone."""
    indexes = list(indexes)
    deadline = time.monotonic() + wait
    while True:
        busy = []
        for i in indexes:
            ip = node_ip(i)
            for host, port in ((ip, NATIVE_PORT), (ip, STORAGE_PORT), ("127.0.0.1", jmx_port(i))):
                if _port_in_use(host, port):
                    busy.append(f"{host}:{port}")
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if busy:
        raise CassandraError(
            "ports already in use: "
            + ", ".join(busy)
            + " (a Cassandra from another runtime dir? run `launcher.py stop --dir <that dir>`)"
        )


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"<no {path}>"
    return _tail_text(data, lines)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _load_cluster(rt: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((rt / "cluster.json").read_text())
        return meta
    except (OSError, ValueError) as e:
        raise CassandraError(f"{rt} is not a cluster created by launcher.py start ({e})") from None


def _indexes(meta: dict[str, Any]) -> range:
    """The node indexes of a cluster (``first`` is absent from older cluster.json: 1)."""
    first = int(meta.get("first", 1))
    return range(first, first + int(meta["nodes"]))


def _tls_dir(rt: Path, meta: dict[str, Any]) -> Path | None:
    return rt / "tls" if meta.get("tls") else None


def _broadcast(meta: dict[str, Any], i: int) -> str | None:
    return links.proxy_ip(i) if meta.get("wan") else None


def _node_from_meta(rt: Path, meta: dict[str, Any], i: int) -> Node:
    n = Node(
        index=i,
        dir=rt / f"node{i}",
        dc=node_dc(i, meta["dcs"], int(meta.get("first", 1))),
        tls_dir=_tls_dir(rt, meta),
        broadcast=_broadcast(meta, i),
    )
    pid = _read_pid(n.pid_file)
    if pid is not None and _is_our_process(pid, n.dir):
        n.pid = pid
    return n


def nodes(dir: str | os.PathLike[str] | None = None) -> list[Node]:
    """The nodes of an existing runtime dir (pid set for the ones running)."""
    rt = _runtime_dir(dir)
    meta = _load_cluster(rt)
    return [_node_from_meta(rt, meta, i) for i in _indexes(meta)]


def _java_cmd(meta: dict[str, Any], n: Node) -> list[str]:
    lib = Path(meta["lib"])
    jamm = sorted(lib.glob("jamm-*.jar"))
    d = n.dir
    cmd = [
        os.environ.get("ROSSBY_JAVA") or shutil.which("java") or "/usr/bin/java",
        f"-Xms{meta['heap_min']}",
        f"-Xmx{meta['heap_max']}",
        *jvm_options(),
        f"-XX:HeapDumpPath={d / 'logs'}",
    ]
    if jamm:
        cmd.append(f"-javaagent:{jamm[-1]}")
    cmd += [
        f"-Dcassandra.config=file://{d / 'conf' / 'cassandra.yaml'}",
        f"-Dcassandra-rackdc.properties=file://{d / 'conf' / 'cassandra-rackdc.properties'}",
        f"-Dcassandra.storagedir={d}",
        f"-Dcassandra.logdir={d / 'logs'}",
        f"-Dlogback.configurationFile={d / 'conf' / 'logback.xml'}",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.jmx.local.port={n.jmx_port}",
        "-Dcom.sun.management.jmxremote.authenticate=false",
        "-Dcom.sun.management.jmxremote.ssl=false",
        f"-Djna.tmpdir={d / 'tmp'}",
        f"-Djava.io.tmpdir={d / 'tmp'}",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        f"-Dcassandra.ring_delay_ms={meta.get('ring_delay_ms', RING_DELAY_MS)}",
        "-Dcassandra.superuser_setup_delay_ms=0",
        "-Dcassandra.unsafesystem=true",
        "-Dcassandra.test.flush_local_schema_changes=false",
        # SIGTERM still drains (flushes memtables) but does not wait ~8 s for the
        # internode connections to quiesce; peers still get the shutdown announcement.
        "-Dcassandra.test.messagingService.nonGracefulShutdown=true",
        f"-Dcassandra.shutdown_announce_in_ms={SHUTDOWN_ANNOUNCE_MS}",
        "-cp",
        f"{d / 'conf'}:{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    return cmd


def _node_tls(rt: Path, meta: dict[str, Any], n: Node) -> dict[str, str] | None:
    tls = _tls_dir(rt, meta)
    if tls is None:
        return None
    out = {"keystore": str(tls / f"{n.name}.pem")}
    if meta.get("tls_client_auth"):
        out["truststore"] = str(tls / "ca.pem")
    return out


def make_tls(tls: Path, indexes: Iterable[int], client_auth: bool) -> None:
    """A CA, one certificate per node (SAN: its IP and ``localhost``) as a
    PEM keystore (key, then certificate and CA), and with
    ``client_auth`` a client certificate. Needs ``cryptography``, imported
    here so the launcher stays stdlib-only for clusters without TLS."""
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise CassandraError(
            "--tls needs the cryptography package: run the launcher with the project's "
            ".venv/bin/python"
        ) from None
    tls.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
        )

    def pem_key(key: Any) -> bytes:
        # Unencrypted PKCS#8 (the file is 0600): Cassandra's PEMReader cannot
        # open PBES2-encrypted keys, the only kind cryptography writes.
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("Rossby Cassandra test CA", name("Rossby Cassandra test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (tls / "ca.pem").write_bytes(ca.public_bytes(pem))
    for i in indexes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(f"node{i}", ca.subject, key)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(node_ip(i))),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        path = tls / f"node{i}.pem"
        path.write_bytes(pem_key(key) + cert.public_bytes(pem) + ca.public_bytes(pem))
        path.chmod(0o600)
    if client_auth:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder("rossby", ca.subject, key)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (tls / "client.pem").write_bytes(cert.public_bytes(pem))
        (tls / "client.key").write_bytes(pem_key(key))
        (tls / "client.key").chmod(0o600)


def _write_node_files(rt: Path, meta: dict[str, Any], n: Node, token: int) -> None:
    if n.dir.exists():
        shutil.rmtree(n.dir)
    for sub in NODE_SUBDIRS:
        (n.dir / sub).mkdir(parents=True, exist_ok=True)
    conf = n.dir / "conf"
    first = int(meta.get("first", 1))
    (conf / "cassandra.yaml").write_text(
        render_yaml(
            cluster_name=meta["cluster_name"],
            node_dir=n.dir,
            ip=n.ip,
            token=token,
            # Seeds by the address gossip knows them by: behind a WAN, the proxy's.
            seed=_broadcast(meta, first) or node_ip(first),
            auth=bool(meta.get("auth")),
            tls=_node_tls(rt, meta, n),
            broadcast=n.broadcast,
        )
    )
    rackdc = render_rackdc(n.dc, n.rack, prefer_local=n.broadcast is not None)
    (conf / "cassandra-rackdc.properties").write_text(rackdc)
    (conf / "logback.xml").write_text(LOGBACK_XML)


def _launch(meta: dict[str, Any], n: Node) -> subprocess.Popen[bytes]:
    for sub in NODE_SUBDIRS:
        (n.dir / sub).mkdir(parents=True, exist_ok=True)
    out = open(n.stdout_file, "ab")
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n===== launcher: starting {n.name} at {stamp} =====\n".encode())
        out.flush()
        proc = subprocess.Popen(
            _java_cmd(meta, n),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=n.dir,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        out.close()
    _PROCS[proc.pid] = proc
    n.pid = proc.pid
    n.pid_file.write_text(f"{proc.pid}\n")
    return proc


def _failure(n: Node, why: str) -> CassandraError:
    return CassandraError(
        f"{n.name} ({n.ip}) {why}\n"
        f"--- tail of {n.log_file} ---\n{_tail(n.log_file, 60)}\n"
        f"--- tail of {n.stdout_file} ---\n{_tail(n.stdout_file, 30)}"
    )


def _wait_ready(n: Node, proc: subprocess.Popen[bytes], log_offset: int, deadline: float) -> None:
    while True:
        rc = proc.poll()
        if rc is not None:
            _forget(proc.pid)
            raise _failure(n, f"exited with rc={rc} during startup")
        if CQL_READY_LINE in _read_from(n.log_file, log_offset) and n.cql_up():
            return
        if time.monotonic() > deadline:
            raise _failure(n, "did not answer CQL in time")
        time.sleep(0.25)


def _wait_gossip(n: Node, others: list[Node], offsets: dict[int, int], deadline: float) -> None:
    """Wait until every running other node logged `<n> is now UP` and n logged each of them UP."""
    if not others:
        return
    pending = {o.index for o in others}
    while pending:
        for o in [o for o in others if o.index in pending]:
            o_log = _read_from(o.log_file, offsets.get(o.index, 0))
            n_log = _read_from(n.log_file, offsets.get(n.index, 0))
            a = f"/{n.gossip_ip}:{STORAGE_PORT} is now UP" in o_log
            b = f"/{o.gossip_ip}:{STORAGE_PORT} is now UP" in n_log
            if a and b:
                pending.discard(o.index)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise _failure(
                n,
                "is up but gossip did not mark it UP with node(s) "
                + ", ".join(f"node{i}" for i in sorted(pending)),
            )
        time.sleep(0.25)


def _kill_hard(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    _forget(pid)


def _start_one(rt: Path, meta: dict[str, Any], n: Node, timeout: float, log: Log) -> Node:
    running = [
        o
        for o in (_node_from_meta(rt, meta, i) for i in _indexes(meta))
        if o.index != n.index and o.pid is not None
    ]
    offsets = {o.index: _size(o.log_file) for o in running}
    offsets[n.index] = _size(n.log_file)
    t0 = time.monotonic()
    deadline = t0 + timeout
    proc = _launch(meta, n)
    log(f"{n.name}: starting on {n.ip} ({n.dc}), pid {proc.pid}, log {n.log_file}")
    try:
        _wait_ready(n, proc, offsets[n.index], deadline)
        n.startup_seconds = time.monotonic() - t0
        _wait_gossip(n, running, offsets, deadline)
    except BaseException:
        _kill_hard(proc.pid)
        with contextlib.suppress(OSError):
            n.pid_file.unlink()
        n.pid = None
        raise
    msg = f"{n.name}: CQL up on {n.ip}:{NATIVE_PORT} in {n.startup_seconds:.1f}s"
    if running:
        msg += f" (gossip with {len(running)} peer(s) after {time.monotonic() - t0:.1f}s)"
    log(msg)
    return n


def start(
    nodes: int = 1,
    dcs: int = 1,
    dir: str | os.PathLike[str] | None = None,
    *,
    version: str = DEFAULT_VERSION,
    timeout: float = DEFAULT_START_TIMEOUT,
    heap_min: str = DEFAULT_HEAP_MIN,
    heap_max: str = DEFAULT_HEAP_MAX,
    cluster_name: str = "rossby",
    first: int = 1,
    auth: bool = False,
    tls: bool = False,
    tls_client_auth: bool = False,
    wan: links.WanSettings | None = None,
    log: Log = stderr_log,
) -> list[Node]:
    """Wipe `dir`, create `nodes` fresh nodes and start them one after the other.

    ``auth``, ``tls`` and ``tls_client_auth`` secure the CQL port (see the
    module doc); by default it is open, without login or TLS. ``wan`` puts
    every node behind a Toxiproxy with those inter-DC link settings (the
    module doc; ``wan_links(dir)`` changes them later).

    The nodes get indexes ``first .. first + nodes - 1`` (127.0.0.<index>, JMX port
    from the index); the first is the seed. Returns when every node answers CQL (and
    gossip sees it UP). On failure all nodes started by this call are killed and
    CassandraError (with log tails) is raised.
    """
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes must be in 1..{MAX_NODES}")
    if dcs not in (1, 2, 3) or dcs > nodes:
        raise ValueError("dcs must be 1, 2 or 3 (and <= nodes)")
    if not 1 <= first <= MAX_INDEX - nodes + 1:
        raise ValueError(
            f"first must be in 1..{MAX_INDEX - nodes + 1} (node indexes <= {MAX_INDEX})"
        )
    indexes = range(first, first + nodes)
    rt = _runtime_dir(dir)
    lib = fetch(version, log=log)
    if rt.exists():
        stop(rt, log=log)
    _check_ports_free(indexes)
    # wipe only what we own: cluster.json + nodeN dirs
    rt.mkdir(parents=True, exist_ok=True)
    for old in rt.glob("node*"):
        if old.is_dir() and old.name[4:].isdigit():
            shutil.rmtree(old)
    meta: dict[str, Any] = {
        "version": version,
        "lib": str(lib),
        "nodes": nodes,
        "first": first,
        "dcs": dcs,
        "heap_min": heap_min,
        "heap_max": heap_max,
        "cluster_name": cluster_name,
        "ring_delay_ms": RING_DELAY_MS,
        "auth": auth,
        "tls": tls or tls_client_auth,
        "tls_client_auth": tls_client_auth,
    }
    if wan is not None:
        meta["wan"] = {"api": links.api_address(first), **dataclasses.asdict(wan)}
    if meta["tls"]:
        if (rt / "tls").exists():
            shutil.rmtree(rt / "tls")
        make_tls(rt / "tls", indexes, tls_client_auth)
    (rt / "cluster.json").write_text(json.dumps(meta, indent=1) + "\n")
    tokens = balanced_tokens(nodes, dcs, first)
    started: list[Node] = []
    try:
        if wan is not None:
            toxiproxy.start_server(meta["wan"]["api"], rt / "toxiproxy", log=log)
            wan_links(rt).create(wan)
        for i in indexes:
            n = Node(
                index=i,
                dir=rt / f"node{i}",
                dc=node_dc(i, dcs, first),
                tls_dir=_tls_dir(rt, meta),
                broadcast=_broadcast(meta, i),
            )
            _write_node_files(rt, meta, n, tokens[i])
            started.append(_start_one(rt, meta, n, timeout, log))
    except BaseException:
        for n in started:
            if n.pid is not None:
                _kill_hard(n.pid)
                with contextlib.suppress(OSError):
                    n.pid_file.unlink()
        if wan is not None:
            toxiproxy.stop_server(meta["wan"]["api"], rt / "toxiproxy")
        raise
    return started


def wan_links(dir: str | os.PathLike[str] | None = None) -> links.WanLinks:
    """The inter-DC links of a cluster started with ``wan``: ``partition(dc)``,
    ``heal(dc)``, ``set_latency(ms, jitter_ms)``, ``set_bandwidth(kbytes_per_s)``."""
    rt = _runtime_dir(dir)
    meta = _load_cluster(rt)
    if not meta.get("wan"):
        raise CassandraError(f"the cluster in {rt} has no WAN (start it with --wan-latency-ms)")
    first = int(meta.get("first", 1))
    return links.WanLinks(
        meta["wan"]["api"], {i: node_dc(i, meta["dcs"], first) for i in _indexes(meta)}
    )


def start_node(
    dir: str | os.PathLike[str] | None,
    i: int,
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    log: Log = stderr_log,
) -> Node:
    """(Re)start existing node i of `dir` WITHOUT wiping its data. No-op if it is running."""
    rt = _runtime_dir(dir)
    meta = _load_cluster(rt)
    indexes = _indexes(meta)
    if i not in indexes:
        raise ValueError(f"node {i} not in {indexes.start}..{indexes.stop - 1}")
    n = _node_from_meta(rt, meta, i)
    if not (n.dir / "conf" / "cassandra.yaml").is_file():
        raise CassandraError(
            f"{n.dir} has no conf/cassandra.yaml; use start() to create the cluster"
        )
    if n.pid is not None:
        log(f"{n.name}: already running (pid {n.pid})")
        return n
    _check_ports_free([i])
    return _start_one(rt, meta, n, timeout, log)


def _signal_node(n: Node, sig: int) -> int | None:
    pid = _read_pid(n.pid_file)
    if pid is None or not _is_our_process(pid, n.dir):
        with contextlib.suppress(OSError):
            n.pid_file.unlink()
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return pid


def _finish_stop(n: Node, pid: int, deadline: float, log: Log) -> None:
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        log(f"{n.name}: still alive after SIGTERM, sending SIGKILL")
        _kill_hard(pid)
    _forget(pid)
    with contextlib.suppress(OSError):
        n.pid_file.unlink()
    n.pid = None


def stop_node(
    dir: str | os.PathLike[str] | None,
    i: int,
    *,
    timeout: float = DEFAULT_STOP_TIMEOUT,
    kill: bool = False,
    log: Log = stderr_log,
) -> bool:
    """Stop node i (SIGTERM, wait `timeout`, then SIGKILL; kill=True: SIGKILL at once,
    i.e. a crash). Keeps its data. Returns True if it was running. Idempotent."""
    rt = _runtime_dir(dir)
    n = Node(index=i, dir=rt / f"node{i}", dc="?")
    t0 = time.monotonic()
    pid = _signal_node(n, signal.SIGKILL if kill else signal.SIGTERM)
    if pid is None:
        return False
    _finish_stop(n, pid, t0 + timeout, log)
    log(f"{n.name}: stopped (pid {pid}) in {time.monotonic() - t0:.1f}s")
    return True


def stop(
    dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float = DEFAULT_STOP_TIMEOUT,
    log: Log = stderr_log,
) -> int:
    """Stop every node of `dir` (SIGTERM all, wait, SIGKILL stragglers). Returns how many
    were running. Idempotent; works on a half-created dir too."""
    rt = _runtime_dir(dir)
    if not rt.is_dir():
        return 0
    t0 = time.monotonic()
    victims = []
    for d in sorted(rt.glob("node*")):
        if d.is_dir() and d.name[4:].isdigit():
            n = Node(index=int(d.name[4:]), dir=d.absolute(), dc="?")
            pid = _signal_node(n, signal.SIGTERM)
            if pid is not None:
                victims.append((n, pid))
    for n, pid in victims:
        _finish_stop(n, pid, t0 + timeout, log)
        log(f"{n.name}: stopped (pid {pid})")
    if victims:
        log(f"stopped {len(victims)} node(s) in {time.monotonic() - t0:.1f}s")
    with contextlib.suppress(CassandraError):
        wan = _load_cluster(rt).get("wan")
        if wan and toxiproxy.stop_server(wan["api"], rt / "toxiproxy"):
            log(f"toxiproxy: stopped ({wan['api']})")
    return len(victims)


def status(dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Per node: index, ip, dc, pid (or None), running, cql_up."""
    rt = _runtime_dir(dir)
    out: list[dict[str, Any]] = []
    for n in nodes(rt):
        out.append(
            {
                "node": n.index,
                "ip": n.ip,
                "dc": n.dc,
                "pid": n.pid,
                "running": n.pid is not None,
                "cql_up": n.pid is not None and n.cql_up(),
            }
        )
    return out


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- CLI


def _wan_settings(a: argparse.Namespace) -> links.WanSettings | None:
    if a.wan_latency_ms is None and a.wan_bandwidth_kbytes is None:
        return None
    return links.WanSettings(a.wan_latency_ms or 0.0, a.wan_jitter_ms, a.wan_bandwidth_kbytes)


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the options are on the main parser and every subparser, and a
    # subparser's default would otherwise overwrite a value given before the
    # subcommand (`launcher.py --dir X start` silently used the default dir).
    common.add_argument(
        "--dir",
        default=argparse.SUPPRESS,
        help="runtime dir (default $ROSSBY_CASSANDRA_HOME or <repo>/var/cassandra)",
    )
    common.add_argument(
        "--version",
        default=argparse.SUPPRESS,
        help=f"cassandra-all version (default {DEFAULT_VERSION})",
    )
    p = argparse.ArgumentParser(
        prog="launcher.py", description=__doc__.split("\n\n")[0], parents=[common]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", parents=[common], help="download jars into the cache")
    ps = sub.add_parser(
        "start", parents=[common], help="wipe the runtime dir and start a fresh cluster"
    )
    ps.add_argument("--nodes", type=int, default=1)
    ps.add_argument("--dcs", type=int, choices=(1, 2, 3), default=1)
    ps.add_argument(
        "--first",
        type=int,
        default=1,
        help="index of the first node (default 1): nodes on 127.0.0.FIRST and up",
    )
    ps.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT, help="seconds per node")
    ps.add_argument("--heap-min", default=DEFAULT_HEAP_MIN)
    ps.add_argument("--heap-max", default=DEFAULT_HEAP_MAX)
    ps.add_argument(
        "--auth", action="store_true", help="PasswordAuthenticator (login cassandra/cassandra)"
    )
    ps.add_argument(
        "--tls", action="store_true", help="require TLS from CQL clients (CA in <dir>/tls/ca.pem)"
    )
    ps.add_argument(
        "--tls-client-auth",
        action="store_true",
        help="also require a client certificate (<dir>/tls/client.pem, client.key); implies --tls",
    )
    ps.add_argument(
        "--wan-latency-ms",
        type=float,
        default=None,
        help="put the nodes behind Toxiproxy with this one-way latency between DCs",
    )
    ps.add_argument("--wan-jitter-ms", type=float, default=0.0, help="± jitter (with --wan-*)")
    ps.add_argument(
        "--wan-bandwidth-kbytes",
        type=int,
        default=None,
        help="cap, in KB/s (kilobytes), on the traffic into each node from other DCs",
    )
    ppt = sub.add_parser("partition", parents=[common], help="WAN: stall every link into a DC")
    ppt.add_argument("dc")
    ppt.add_argument("--drop", action="store_true", help="drop the bytes instead of holding them")
    phl = sub.add_parser("heal", parents=[common], help="WAN: undo partition DC")
    phl.add_argument("dc")
    psl = sub.add_parser("set-latency", parents=[common], help="WAN: one-way latency between DCs")
    psl.add_argument("ms", type=float)
    psl.add_argument("--jitter-ms", type=float, default=0.0)
    pst = sub.add_parser("stop", parents=[common], help="stop all nodes (idempotent)")
    pst.add_argument("--timeout", type=float, default=DEFAULT_STOP_TIMEOUT)
    sub.add_parser("status", parents=[common], help="show which nodes are up")
    psn = sub.add_parser(
        "start-node", parents=[common], help="restart one existing node, keeping data"
    )
    psn.add_argument("node", type=int)
    psn.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)
    pkn = sub.add_parser("stop-node", parents=[common], help="stop one node, keeping data")
    pkn.add_argument("node", type=int)
    pkn.add_argument("--kill", action="store_true", help="SIGKILL at once (simulated crash)")
    pkn.add_argument("--timeout", type=float, default=DEFAULT_STOP_TIMEOUT)
    a = p.parse_args(argv)
    a.dir = getattr(a, "dir", None)
    a.version = getattr(a, "version", DEFAULT_VERSION)

    try:
        if a.cmd == "fetch":
            t0 = time.monotonic()
            lib = fetch(a.version)
            print(f"{lib} ({time.monotonic() - t0:.1f}s)")
        elif a.cmd == "start":
            t0 = time.monotonic()
            started = start(
                a.nodes,
                a.dcs,
                a.dir,
                version=a.version,
                timeout=a.timeout,
                heap_min=a.heap_min,
                heap_max=a.heap_max,
                first=a.first,
                auth=a.auth,
                tls=a.tls,
                tls_client_auth=a.tls_client_auth,
                wan=_wan_settings(a),
            )
            for n in started:
                rss = rss_bytes(n.pid) if n.pid else None
                print(
                    f"{n.name} {n.ip}:{n.native_port} {n.dc} pid={n.pid} "
                    f"startup={n.startup_seconds:.1f}s rss={(rss or 0) / 2**20:.0f}MiB"
                )
            if a.auth:
                print("login: cassandra / cassandra (PasswordAuthenticator)")
            if a.tls or a.tls_client_auth:
                print(f"TLS: trust {_runtime_dir(a.dir) / 'tls' / 'ca.pem'}")
            print(
                f"cluster up in {time.monotonic() - t0:.1f}s; stop with: "
                f"{Path(sys.argv[0]).name} stop --dir {_runtime_dir(a.dir)}"
            )
        elif a.cmd == "stop":
            stop(a.dir, timeout=a.timeout)
        elif a.cmd == "status":
            rt = _runtime_dir(a.dir)
            if not (rt / "cluster.json").is_file():
                print(f"no cluster in {rt}")
                return 1
            rows = status(rt)
            for r in rows:
                state = "UP" if r["cql_up"] else ("STARTING/NO-CQL" if r["running"] else "DOWN")
                pid = f" pid={r['pid']}" if r["pid"] else ""
                print(f"node{r['node']} {r['ip']} {r['dc']} {state}{pid}")
            return 0 if all(r["cql_up"] for r in rows) else 3
        elif a.cmd == "start-node":
            n = start_node(a.dir, a.node, timeout=a.timeout)
            print(
                f"{n.name} {n.ip} pid={n.pid}"
                + (f" startup={n.startup_seconds:.1f}s" if n.startup_seconds is not None else "")
            )
        elif a.cmd == "stop-node":
            stop_node(a.dir, a.node, timeout=a.timeout, kill=a.kill)
        elif a.cmd == "partition":
            wan_links(a.dir).partition(a.dc, drop=a.drop)
        elif a.cmd == "heal":
            wan_links(a.dir).heal(a.dc)
        elif a.cmd == "set-latency":
            wan_links(a.dir).set_latency(a.ms, a.jitter_ms)
    except (CassandraError, ValueError, toxiproxy.ToxiproxyError, links.ToxiproxyApiError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
