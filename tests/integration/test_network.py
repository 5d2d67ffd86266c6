"""Network modes end to end: a real server, real sandboxes, an "external host" made by the test.

The external host is a network namespace of its own joined to the host by a
veth pair, serving HTTP from a tiny Python server. The only packets these
tests send leave through that veth: every other address they try is refused
inside the instance (its own loopback, or an unreachable route) before any
packet is sent. The tests hold a lock while the external host exists, so
that two test runs on one machine never fight over its names and addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.conftest import Server

pytestmark = pytest.mark.sandbox

NETNS = "wuzhao-test-ext"
VETH_HOST, VETH_EXT = "wzt-ext0", "wzt-ext1"
HTTP_PORT = 8080
BODY = "hello from the external host\n"
LOCK = Path("/tmp/wuzhao-test-external-host.lock")
FAST = 1.0  # seconds: a refused connection fails at once; a timeout would take the probe's TIMEOUT

PROBE = """
import errno, socket, struct, time, urllib.request

TIMEOUT = 5.0


def _outcome(exc):
    if isinstance(exc, TimeoutError) or exc.errno is None:
        return type(exc).__name__
    return errno.errorcode.get(exc.errno, str(exc.errno))


def fetch(event, context):
    try:
        with urllib.request.urlopen(event["url"], timeout=TIMEOUT) as response:
            return {"status": response.status, "body": response.read().decode()}
    except OSError as exc:
        return {"error": _outcome(getattr(exc, "reason", exc))}


def connect(event, context):
    # Only ever given targets that must be refused: a UDP datagram is sent only
    # after connect() succeeded, to see the send refused too.
    results = {}
    for host, port, kind in event["targets"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT)
        started = time.monotonic()
        try:
            sock.connect((host, port))
            if kind == "udp":
                sock.send(b"?")
            outcome = "connected"
        except OSError as exc:
            outcome = _outcome(exc)
        finally:
            sock.close()
        results[f"{kind}:{host}:{port}"] = [outcome, round(time.monotonic() - started, 3)]
    return results


def undo_block(event, context):
    # RTM_DELROUTE of "unreachable 10.0.0.0/8" in the main table, as `ip route del` sends it.
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 8, 0, 0, 254, 0, 0, 7, 0)
    body += struct.pack("=HH", 8, 1) + bytes([10, 0, 0, 0])
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    except OSError as exc:
        return {"socket": _outcome(exc)}
    with sock:
        sock.sendto(struct.pack("=IHHII", 16 + len(body), 25, 1 | 4, 1, 0) + body, (0, 0))
        error = struct.unpack_from("=i", sock.recv(4096), 16)[0]
    return {"delete": errno.errorcode.get(-error, str(error))}


def ipv6_interfaces(event, context):
    with open("/proc/net/if_inet6") as f:
        return sorted({line.split()[-1] for line in f})


def resolv_conf(event, context):
    try:
        with open("/etc/resolv.conf") as f:
            return f.read()
    except OSError as exc:
        return _outcome(exc)
"""


@dataclass
class ExternalHost:
    host_address: str  # the host's side of the veth
    address: str  # the external host's
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _remove_external_host() -> None:
    # Deleting one end of a veth deletes both; deleting the namespace kills nothing
    # by itself, so the server in it is stopped first by the caller.
    subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, timeout=30)


@contextlib.contextmanager
def external_host(tmp_path: Path, host_cidr: str, ext_cidr: str) -> Iterator[ExternalHost]:
    """A namespace at ``ext_cidr`` behind a veth whose host side is ``host_cidr``, serving HTTP."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(BODY)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the namespace is gone
        _remove_external_host()  # leftovers of a run that was killed
        server: subprocess.Popen[bytes] | None = None
        try:
            _run("ip", "netns", "add", NETNS)
            _run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_EXT)
            _run("ip", "link", "set", VETH_EXT, "netns", NETNS)
            _run("ip", "addr", "add", host_cidr, "dev", VETH_HOST)
            _run("ip", "link", "set", VETH_HOST, "up")
            _run("ip", "-n", NETNS, "addr", "add", ext_cidr, "dev", VETH_EXT)
            _run("ip", "-n", NETNS, "link", "set", VETH_EXT, "up")
            _run("ip", "-n", NETNS, "link", "set", "lo", "up")
            address = ext_cidr.split("/")[0]
            serve = [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(root)]
            server = subprocess.Popen(
                ["ip", "netns", "exec", NETNS, *serve, str(HTTP_PORT)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            host = ExternalHost(host_cidr.split("/")[0], address, HTTP_PORT)
            _wait_serving(host.url, server)
            yield host
        finally:
            if server is not None:
                server.kill()
                server.wait()
            _remove_external_host()


def _wait_serving(url: str, server: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the external host's HTTP server exited"
        try:
            if httpx.get(url, timeout=1).text == BODY:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def _deploy(client: httpx.Client, code: Callable[..., str], name: str, handler: str, **config: Any) -> Any:
    files = {"probe.py": PROBE}
    response = client.put(f"/v1/functions/{name}", json={"code": code(files), "handler": handler, **config})
    assert response.status_code in (200, 201), response.text
    return response.json()


def _invoke(client: httpx.Client, name: str, event: Any) -> Any:
    response = client.post(f"/v1/functions/{name}/invoke", json=event)
    assert response.status_code == 200, response.text
    assert "x-wuzhao-function-error" not in response.headers, response.text
    return response.json()


def _connect(client: httpx.Client, name: str, *targets: tuple[str, int, str]) -> dict[str, str]:
    """Connect to each target; {"tcp:host:port": errno name}, each checked to have failed fast."""
    results = _invoke(client, name, {"targets": [list(t) for t in targets]})
    slow = {target: seconds for target, (_, seconds) in results.items() if seconds > FAST}
    assert not slow, f"not refused at once: {slow}"
    return {target: outcome for target, (outcome, _) in results.items()}


def _host_ipv4_addresses() -> list[str]:
    shown = json.loads(subprocess.run(["ip", "-4", "-j", "addr"], capture_output=True, check=True).stdout)
    return [
        info["local"]
        for link in shown
        if link["ifname"] != "lo"
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def _slirp_children(pid: int) -> list[int]:
    """Pids of the slirp4netns processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == "slirp4netns" and ppid == pid:
            found.append(int(entry))
    return found


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(autouse=True)
def _needs_slirp4netns() -> None:
    assert shutil.which("slirp4netns"), "slirp4netns is not installed: run scripts/install"


def test_outbound_reaches_the_internet_but_nothing_of_the_host(
    start_server: Callable[..., Server], code: Callable[..., str], tmp_path: Path
) -> None:
    with external_host(tmp_path, "198.51.100.1/24", "198.51.100.2/24") as ext:
        # Listening on every address: the API is on the host's other addresses too.
        server = start_server(WUZHAO_HOST="0.0.0.0")
        client = server.client()
        assert _deploy(client, code, "out-fetch", "probe.fetch", network="outbound")["network"] == "outbound"
        _deploy(client, code, "out-connect", "probe.connect", network="outbound")
        assert _deploy(client, code, "none-fetch", "probe.fetch")["network"] == "none"
        _deploy(client, code, "none-connect", "probe.connect", network="none")

        # The external host, by HTTP.
        assert _invoke(client, "out-fetch", {"url": ext.url}) == {"status": 200, "body": BODY}
        assert _invoke(client, "none-fetch", {"url": ext.url}) == {"error": "ENETUNREACH"}

        # The API: on the instance's loopback there is nothing; the host's own
        # addresses (the veth's host side included) are unreachable.
        host_addresses = _host_ipv4_addresses()
        assert ext.host_address in host_addresses
        api = [("127.0.0.1", server.port, "tcp")] + [(a, server.port, "tcp") for a in host_addresses]
        outbound = _connect(client, "out-connect", *api)
        none = _connect(client, "none-connect", *api)
        assert outbound.pop(f"tcp:127.0.0.1:{server.port}") == "ECONNREFUSED"
        assert none.pop(f"tcp:127.0.0.1:{server.port}") == "ECONNREFUSED"
        assert set(outbound.values()) == {"EHOSTUNREACH"}, outbound
        assert set(none.values()) == {"ENETUNREACH"}, none

        # Link-local, metadata, private and shared ranges, slirp's gateway: refused
        # inside the instance, TCP and UDP alike (no packet is sent).
        blocked = [
            ("169.254.169.254", 80, "tcp"),
            ("169.254.169.254", 53, "udp"),
            ("10.0.0.1", 80, "tcp"),
            ("192.168.1.1", 80, "tcp"),
            ("172.16.0.1", 80, "tcp"),
            ("100.64.0.1", 80, "tcp"),
            ("10.0.2.2", 80, "tcp"),
            ("224.0.0.1", 80, "udp"),
            # slirp's DNS forwarder takes DNS only (it would pass any port on to the host's resolver)
            ("10.0.2.3", 80, "tcp"),
            ("10.0.2.3", 5353, "udp"),
        ]
        outcomes = _connect(client, "out-connect", *blocked)
        expected = {f"{kind}:{host}:{port}": "EHOSTUNREACH" for host, port, kind in blocked}
        expected.update({"tcp:10.0.2.3:80": "ECONNREFUSED", "udp:10.0.2.3:5353": "EPERM"})
        assert outcomes == expected
        none_outcomes = _connect(client, "none-connect", *blocked)
        assert set(none_outcomes.values()) == {"ENETUNREACH"}, none_outcomes

        # The function cannot lift the block: the routes are not its namespace's to change.
        _deploy(client, code, "out-undo", "probe.undo_block", network="outbound")
        assert _invoke(client, "out-undo", {}) in ({"delete": "EPERM"}, {"socket": "EPERM"})
        assert _connect(client, "out-connect", ("10.0.0.1", 80, "tcp")) == {"tcp:10.0.0.1:80": "EHOSTUNREACH"}

        # DNS goes to slirp's forwarder (not queried here: that would leave the machine).
        _deploy(client, code, "out-dns", "probe.resolv_conf", network="outbound")
        _deploy(client, code, "none-dns", "probe.resolv_conf")
        assert _invoke(client, "out-dns", {}) == "nameserver 10.0.2.3\n"
        assert _invoke(client, "none-dns", {}) == "ENOENT"

        # No IPv6 but on the loopback: nothing of it leaves an instance.
        _deploy(client, code, "out-ipv6", "probe.ipv6_interfaces", network="outbound")
        assert _invoke(client, "out-ipv6", {}) == ["lo"]

        # One slirp4netns per outbound instance (five are warm), none for the others;
        # all gone once the server stopped.
        assert server.process is not None
        slirps = _slirp_children(server.process.pid)
        assert len(slirps) == 5, slirps
        assert server.stop() == 0
        assert _gone(slirps), "slirp4netns left running after the server stopped"


def test_network_mode_is_validated_and_can_change(
    start_server: Callable[..., Server], code: Callable[..., str], tmp_path: Path
) -> None:
    server = start_server()
    client = server.client()
    for bad in ("inbound", "OUTBOUND", "", 1):
        response = client.put("/v1/functions/bad-net", json={"code": code(), "network": bad})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "network"
    assert client.get("/v1/functions/bad-net").status_code == 404

    _deploy(client, code, "switch", "probe.connect", network="outbound")
    target = ("10.0.0.1", 80, "tcp")
    assert _connect(client, "switch", target) == {"tcp:10.0.0.1:80": "EHOSTUNREACH"}
    assert client.put("/v1/functions/switch", json={"network": "none"}).json()["network"] == "none"
    assert _connect(client, "switch", target) == {"tcp:10.0.0.1:80": "ENETUNREACH"}
    assert client.get("/v1/functions/switch").json()["network"] == "none"


def test_the_allow_list_opens_a_private_range_but_never_the_host(
    start_server: Callable[..., Server], code: Callable[..., str], tmp_path: Path
) -> None:
    with external_host(tmp_path, "10.203.0.1/24", "10.203.0.2/24") as ext:
        default = start_server()
        client = default.client()
        _deploy(client, code, "fetch", "probe.fetch", network="outbound")
        assert _invoke(client, "fetch", {"url": ext.url}) == {"error": "EHOSTUNREACH"}
        default.stop()

        allowing = start_server(WUZHAO_NETWORK_ALLOW="10.203.0.0/24")
        client = allowing.client()
        _deploy(client, code, "fetch", "probe.fetch", network="outbound")
        _deploy(client, code, "connect", "probe.connect", network="outbound")
        assert _invoke(client, "fetch", {"url": ext.url}) == {"status": 200, "body": BODY}
        outcomes = _connect(
            client,
            "connect",
            (ext.host_address, allowing.port, "tcp"),  # inside the allowed range, but the host's
            ("10.203.1.1", 80, "tcp"),  # next to the allowed range
            ("10.0.0.1", 80, "tcp"),
            ("169.254.169.254", 80, "tcp"),
        )
        assert set(outcomes.values()) == {"EHOSTUNREACH"}, outcomes


def test_a_killed_server_leaves_no_slirp4netns(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server()
    client = server.client()
    _deploy(client, code, "out", "probe.connect", network="outbound")
    assert _connect(client, "out", ("10.0.0.1", 80, "tcp")) == {"tcp:10.0.0.1:80": "EHOSTUNREACH"}
    assert server.process is not None
    slirps = _slirp_children(server.process.pid)
    assert len(slirps) == 1, slirps

    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    # Its exit pipe closed with the server: slirp4netns ends by itself.
    assert _gone(slirps), "slirp4netns outlived a killed server"
    # The next start on the same data dir sweeps what else the crash left (cgroups).
    start_server(data_dir=server.data_dir).stop()
