"""Hostile functions on the network: no listening, no raw sockets, no way to the platform or metadata."""

from __future__ import annotations

import fcntl
import socket
import struct

import pytest
from tests.security.conftest import NEEDS_SANDBOX

pytestmark = NEEDS_SANDBOX

# "default": the function sets no network mode (it must get "none", only its own loopback);
# "outbound": the user-space stack that reaches the internet but never the host or metadata.
MODES = [pytest.param({}, id="default"), pytest.param({"network": "outbound"}, id="outbound")]
REFUSED_FAST = {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "EACCES", "EPERM"}

CONNECT = """
from hostile import *

def connect(host, port, family=socket.AF_INET):
    started = time.monotonic()
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect((host, port))
        outcome = "ok"
    except socket.timeout:
        outcome = "timeout"
    except OSError as exc:
        outcome = errname(exc.errno)
    return {"outcome": outcome, "seconds": time.monotonic() - started}

def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000" and fields[2] != "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    return None
"""


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses but loopback: where the platform's ports also live."""
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                continue  # no IPv4 address on it
            addresses.append(socket.inet_ntoa(answer[20:24]))
    return addresses


def test_bind_and_listen_is_eperm(api, hostile):
    hostile(
        "net-listen",
        """
from hostile import *

def serve(family, host):
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 8080))
        sock.listen(16)
        return "ok"
    except OSError as exc:
        return errname(exc.errno)
    finally:
        sock.close()

def accept_on_unlistened():
    with socket.socket() as sock:
        return attempt(sock.accept)

def handler(event, context):
    return {
        "inet": serve(socket.AF_INET, "127.0.0.1"),
        "inet_any": serve(socket.AF_INET, "0.0.0.0"),
        "inet6": serve(socket.AF_INET6, "::1"),
        "accept": accept_on_unlistened(),
    }
""",
    )
    seen = api.post("/v1/functions/net-listen/invoke").json()
    assert seen == {"inet": "EPERM", "inet_any": "EPERM", "inet6": "EPERM", "accept": "EPERM"}


@pytest.mark.parametrize("mode", MODES)
def test_connect_to_api_port_is_refused(server, api, hostile, mode):
    name = "net-api-" + (mode.get("network") or "default")
    hostile(
        name,
        CONNECT
        + """
def handler(event, context):
    port = event["port"]
    via_gateway = gateway()
    return {
        "loopback": connect("127.0.0.1", port),
        "loopback6": connect("::1", port, socket.AF_INET6),
        "gateway": connect(via_gateway, port) if via_gateway else None,
        "slirp_host": connect("10.0.2.2", port),
        "host": {address: connect(address, port) for address in event["host"]},
    }
""",
        **mode,
    )
    addresses = host_addresses()
    seen = api.post(f"/v1/functions/{name}/invoke", json={"port": server.port, "host": addresses}).json()
    # its own loopback has no server on that port; the host's is another network
    assert seen["loopback"]["outcome"] == "ECONNREFUSED"
    assert seen["loopback6"]["outcome"] in ("ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH")
    # the way out (if it has one) does not lead to the host either, and says so at once
    for via in ("gateway", "slirp_host"):
        if seen[via] is not None:
            assert seen[via]["outcome"] in REFUSED_FAST, (via, seen[via])
            assert seen[via]["seconds"] < 2, (via, seen[via])
    # nor do the host's own addresses: no packet reaches it (a refusal from the host would
    # mean every other service on it is in reach)
    for address, result in seen["host"].items():
        assert result["outcome"] in ("ENETUNREACH", "EHOSTUNREACH"), (address, result)
        assert result["seconds"] < 1, (address, result)


@pytest.mark.parametrize("mode", MODES)
def test_metadata_address_is_unreachable(api, hostile, mode):
    name = "net-metadata-" + (mode.get("network") or "default")
    hostile(
        name,
        CONNECT
        + """
def handler(event, context):
    return {
        "metadata": connect("169.254.169.254", 80),
        "metadata_https": connect("169.254.169.254", 443),
        "private": connect("10.0.0.1", 80),
        "private_192": connect("192.168.0.1", 80),
    }
""",
        **mode,
    )
    seen = api.post(f"/v1/functions/{name}/invoke").json()
    for target, result in seen.items():
        if not mode:  # only a loopback: no route at all
            assert result["outcome"] == "ENETUNREACH", (target, result)
        else:
            assert result["outcome"] in ("EHOSTUNREACH", "ENETUNREACH"), (target, result)
        assert result["seconds"] < 1, (target, result)  # fails fast, not a timeout


def test_raw_socket_is_denied(api, hostile):
    hostile(
        "net-raw",
        """
from hostile import *

def make(family, kind, proto=0):
    def action():
        socket.socket(family, kind, proto).close()
    return attempt(action)

def handler(event, context):
    return {
        "raw_icmp": make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "raw_tcp": make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
        "raw_ip6": make(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        "packet": make(socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
        "packet_dgram": make(socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300),
    }
""",
    )
    seen = api.post("/v1/functions/net-raw/invoke").json()
    assert seen == dict.fromkeys(seen, "EPERM")
