"""The outbound network's plan (pure) and the netlink messages that carry it: no namespace touched."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuzhao.sandbox import network, rootfs
from wuzhao.sandbox.api import SandboxSpec
from wuzhao.sandbox.network import (
    BLOCKED,
    SLIRP_CIDR,
    SLIRP_DNS,
    Address,
    Network,
    blocked_networks,
)

net = ipaddress.ip_network
addr = ipaddress.ip_address
SLIRP_BLOCKS = [str(n) for n in SLIRP_CIDR.address_exclude(net("10.0.2.3/32"))]
DEFAULT = [cidr for cidr, _ in BLOCKED]


def plan(allow: str = "", hosts: str = "") -> list[str]:
    return [
        str(n) for n in blocked_networks([net(a) for a in allow.split()], [addr(h) for h in hosts.split()])
    ]


def covered(address: str, blocked: list[str]) -> bool:
    return any(addr(address) in net(b) for b in blocked)


@pytest.mark.parametrize(
    ("allow", "hosts", "expected"),
    [
        # No allow-list, no host address (the full list: test_the_default_plan_in_full).
        ("", "", None),
        # The host's addresses join, loopback ones do not (127/8 is the instance's own lo).
        ("", "127.0.0.1 ::1 192.0.2.2 fd00::2", None),
        # A whole blocked range allowed: gone; slirp's pieces of it stay.
        ("10.0.0.0/8", "", None),
        # Part of a range allowed: the rest of the range stays blocked.
        ("10.203.0.0/24", "", None),
        # Allowing something never blocked changes nothing.
        ("198.51.100.0/24", "", None),
    ],
)
def test_plan_table(allow: str, hosts: str, expected: list[str] | None) -> None:
    blocked = plan(allow, hosts)
    if expected is not None:
        assert blocked == expected
    assert len(set(blocked)) == len(blocked)
    for host in hosts.split():
        assert covered(host, blocked) == (not addr(host).is_loopback)
    for allowed in allow.split():
        inside = net(allowed).network_address + 5
        assert covered(str(inside), blocked) == (str(inside).startswith("10.0.2."))


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("169.254.169.254", True),  # cloud metadata
        ("169.254.0.1", True),
        ("10.0.0.1", True),
        ("10.255.255.53", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.1.1", True),
        ("100.64.0.1", True),
        ("100.100.100.200", True),  # Alibaba's metadata
        ("100.128.0.1", False),
        ("0.1.2.3", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("10.0.2.2", True),  # slirp's gateway: the host's loopback
        ("10.0.2.3", False),  # slirp's DNS forwarder (its ports are filtered by nf_tables)
        ("10.0.2.100", True),  # its own address: local, the route never applies
        ("8.8.8.8", False),
        ("198.51.100.2", False),  # TEST-NET-2, the tests' external host
        ("fd00:ec2::254", True),  # AWS's IPv6 metadata
        ("fe80::1", True),
        ("2001:db8::1", False),
    ],
)
def test_what_is_blocked_by_default(address: str, blocked: bool) -> None:
    assert covered(address, plan()) == blocked


def test_the_default_plan_in_full() -> None:
    ten = [str(n) for n in net("10.0.0.0/8").address_exclude(SLIRP_CIDR)]
    expected = [c for c in DEFAULT if c != "10.0.0.0/8"] + ten + SLIRP_BLOCKS
    assert set(plan()) == set(expected)
    assert len(plan()) == len(expected)


def test_slirps_dns_is_never_hidden() -> None:
    for allow in ("", "10.0.2.4/30", "10.0.2.0/25", "10.0.0.0/8"):
        assert not covered("10.0.2.3", plan(allow, "10.0.2.3 10.0.2.2"))
        assert covered("10.0.2.2", plan(allow, "10.0.2.3 10.0.2.2"))


def test_the_host_stays_blocked_inside_an_allowed_range() -> None:
    blocked = plan("10.0.0.0/8 0.0.0.0/0", "10.1.2.3")
    assert covered("10.1.2.3", blocked)
    assert not covered("10.1.2.4", blocked)
    assert not covered("169.254.169.254", blocked)
    assert covered("10.0.2.2", blocked)  # slirp's gateway whatever the allow-list says


def test_an_ipv6_allowance_splits_only_ipv6_blocks() -> None:
    blocked = plan("fd00::/8")
    assert not covered("fd12::1", blocked)
    assert covered("fc00::1", blocked)
    assert covered("10.0.0.1", blocked)


_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_v4_networks = st.builds(
    lambda a, prefix: ipaddress.IPv4Network((int(a) >> (32 - prefix) << (32 - prefix), prefix)),
    _v4,
    st.integers(0, 32),
)


@given(address=_v4, allow=st.lists(_v4_networks, max_size=4), hosts=st.lists(_v4, max_size=3))
def test_plan_matches_its_definition(
    address: ipaddress.IPv4Address, allow: list[Network], hosts: list[Address]
) -> None:
    blocked = blocked_networks(allow, hosts)
    in_table = any(address in net(cidr) for cidr, _ in BLOCKED)
    allowed = any(address in a for a in allow)
    own_host = address in hosts and not address.is_loopback
    # In slirp's network its own rule; elsewhere the table less the allow-list, plus the host.
    expected = address != SLIRP_DNS if address in SLIRP_CIDR else (in_table and not allowed) or own_host
    assert any(address in n for n in blocked) == expected


def test_route_message_layout() -> None:
    message = network._route_message(7, net("10.0.0.0/8"))
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", message)
    assert (length, kind, seq) == (len(message), network.RTM_NEWROUTE, 7)
    assert flags & network.NLM_F_EXCL  # an existing route is an error, never silently kept
    family, dst_len, _, _, table, _, scope, route_type, _ = struct.unpack_from("=BBBBBBBBI", message, 16)
    assert (family, dst_len, table, scope) == (socket.AF_INET, 8, 254, 0)
    assert route_type == network.RTN_UNREACHABLE
    assert network._attributes(message[28:]) == {network.RTA_DST: bytes([10, 0, 0, 0])}
    assert len(network._route_message(1, net("fc00::/7"))) == 16 + 12 + 20


def _nested(data: bytes) -> dict[int, bytes]:
    return {kind & ~network.NLA_F_NESTED: value for kind, value in network._attributes(data).items()}


def _expressions(rule: bytes) -> list[str]:
    elements = []
    offset = 0
    data = _nested(rule)[4]  # NFTA_RULE_EXPRESSIONS: a list of NFTA_LIST_ELEM
    while offset < len(data):
        length, _ = struct.unpack_from("=HH", data, offset)
        element = _nested(data[offset + 4 : offset + length])
        elements.append(element[1].rstrip(b"\0").decode())
        offset += (length + 3) & ~3
    return elements


def test_dns_filter_is_one_table_one_output_chain_four_rules_in_order() -> None:
    messages = network._dns_filter_messages()
    kinds = [kind for kind, _ in messages]
    assert kinds == [network.NFT_MSG_NEWTABLE, network.NFT_MSG_NEWCHAIN] + [network.NFT_MSG_NEWRULE] * 4
    chain = _nested(messages[1][1])
    hook = _nested(chain[4])
    assert struct.unpack("!I", hook[1])[0] == network.NF_INET_LOCAL_OUT
    assert chain[7] == b"filter\0"
    rules = [_expressions(body) for _, body in messages[2:]]
    to_dns = ["payload", "cmp"]
    assert rules == [
        [*to_dns, "meta", "cmp", "payload", "cmp", "immediate"],  # udp dport 53 accept
        [*to_dns, "meta", "cmp", "payload", "cmp", "immediate"],  # tcp dport 53 accept
        [*to_dns, "meta", "cmp", "reject"],  # other tcp: reset
        [*to_dns, "immediate"],  # the rest: drop
    ]
    assert SLIRP_DNS.packed in messages[2][1]


def test_outbound_instances_get_a_resolv_conf_naming_slirps_dns() -> None:
    facts = rootfs.probe_host()
    spec = SandboxSpec(instance_id="a", code_dir="/srv/code", uid=1000, memory_mb=128, cpu_shares=100)
    outbound = [op for op in rootfs.plan(spec, facts) if op.target == "/etc/resolv.conf"]
    assert outbound == []
    outbound_spec = SandboxSpec(**{**vars(spec), "network": "outbound"})
    files = [op for op in rootfs.plan(outbound_spec, facts) if op.target == "/etc/resolv.conf"]
    assert files == [rootfs.File("/etc/resolv.conf", "nameserver 10.0.2.3\n")]
