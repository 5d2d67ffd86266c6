"""Network modes of an instance: what an ``outbound`` instance may reach, and the routes that say so.

An instance always gets a network namespace of its own with only ``lo`` up
(mode ``none``). In mode ``outbound`` a slirp4netns process outside the
sandbox (:mod:`wuzhao.sandbox.slirp`) gives that namespace a ``tap0`` with
``10.0.2.100/24``, a default route via slirp's gateway ``10.0.2.2`` and its DNS
forwarder at ``10.0.2.3``; slirp turns the instance's packets into ordinary
sockets of the host, so the function can open TCP and UDP connections to the
internet (IPv4 only).

What it must not reach is enforced inside the namespace by ``unreachable``
routes (:func:`blocked_networks`, a pure plan; :func:`add_unreachable_routes`
installs it over rtnetlink). The namespace belongs to the host's initial user
namespace and the routes are added while the child is still root there, before
the identity drop; the function, root only in its own later user namespace,
has no CAP_NET_ADMIN over them. A connection to a blocked address fails at once
with EHOSTUNREACH and no packet leaves the instance. Blocked:

- the ranges of :data:`BLOCKED` (private, shared, link-local including the
  metadata address 169.254.169.254, multicast, reserved), less the networks of
  the operator's allow-list (``network_allow``);
- every address of the host itself (read when an instance is launched), even
  when an allowed range contains it: the platform's ports live there;
- slirp's own network but its DNS forwarder: ``10.0.2.2`` would be the host's
  loopback (slirp4netns runs with ``--disable-host-loopback`` too);
- on the DNS forwarder ``10.0.2.3``, every port but 53: slirp forwards
  whatever reaches that address to the host's resolver, which may be a private
  or metadata address. Ports are beyond routes, so an nf_tables table in the
  instance's namespace does it (:func:`filter_slirp_dns`): TCP elsewhere is
  reset (ECONNREFUSED), anything else dropped (EPERM).

The host's loopback as such is out of reach by construction: ``127.0.0.0/8``
inside the namespace is the instance's own ``lo``. IPv6 is off on ``tap0``
(slirp4netns runs without ``--enable-ipv6``), so no IPv6 leaves an instance.

The child's side of the handshake with the worker, on the runtime channel
before the runtime speaks on it (:func:`announce`, :func:`seal`): the child
writes :data:`NETNS_MADE` once its namespace exists, the worker starts
slirp4netns on ``/proc/<pid>/ns/net`` and writes :data:`ATTACHED` once slirp
reported its interface configured; only then does the child add its routes
and its DNS filter, and drop its identity. Both run after a fork, so they
import nothing lazily.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MODES = ("none", "outbound")
SLIRP_CIDR = ipaddress.IPv4Network("10.0.2.0/24")  # slirp4netns's default, named explicitly
SLIRP_DNS = ipaddress.IPv4Address("10.0.2.3")  # its DNS forwarder (network + 3)
TAP = "tap0"
MTU = 65520
RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"

NETNS_MADE = b"N"  # child -> worker: the instance's network namespace exists
ATTACHED = b"R"  # worker -> child: slirp4netns configured tap0 in it

# Destinations no outbound instance reaches unless the allow-list names them.
BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network'"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
    ("169.254.0.0/16", "link-local, cloud metadata 169.254.169.254"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, limited broadcast"),
    ("fc00::/7", "unique local IPv6, incl. metadata fd00:ec2::254"),
    ("fe80::/10", "link-local IPv6"),
)


def blocked_networks(allow: Iterable[Network], host_addresses: Iterable[Address]) -> list[Network]:
    """The destinations an outbound instance gets an ``unreachable`` route for (see the module doc)."""
    blocked = [ipaddress.ip_network(cidr) for cidr, _ in BLOCKED]
    # slirp's network follows its own rule (below), whatever the allow-list or
    # the host's addresses say: no route may hide its DNS forwarder.
    for allowed in (*allow, SLIRP_CIDR):
        blocked = _subtract(blocked, allowed)
    blocked += (ipaddress.ip_network(a) for a in host_addresses if not a.is_loopback and a not in SLIRP_CIDR)
    blocked += SLIRP_CIDR.address_exclude(ipaddress.IPv4Network(SLIRP_DNS))
    unique = set(blocked)
    return sorted(unique, key=lambda n: (n.version, n.network_address, n.prefixlen))


@functools.lru_cache(maxsize=16)
def route_plan(allow: tuple[Network, ...], host_addresses: tuple[Address, ...]) -> tuple[str, ...]:
    """:func:`blocked_networks` as strings, remembered: 0.4 ms to make, and the host changes rarely."""
    return tuple(str(n) for n in blocked_networks(allow, host_addresses))


def _subtract(networks: list[Network], allowed: Network) -> list[Network]:
    left: list[Network] = []
    for network in networks:
        if network.version != allowed.version or not network.overlaps(allowed):
            left.append(network)
        elif not allowed.supernet_of(network):  # type: ignore[arg-type]  # same version, checked above
            left += network.address_exclude(allowed)  # type: ignore[arg-type]
    return left


# rtnetlink, just what is needed: add routes, list the host's addresses.
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_ERRNO = struct.Struct("=i")
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE = 254, 4, 0, 7
RTA_DST, IFA_ADDRESS, IFA_LOCAL = 1, 1, 2


def _netlink() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)  # NETLINK_ROUTE


def _messages(data: bytes) -> Iterable[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in ``data``."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        yield kind, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _attributes(data: bytes) -> dict[int, bytes]:
    found = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        found[kind] = data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _route_message(seq: int, network: Network) -> bytes:
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    dst = network.network_address.packed
    body = _RTMSG.pack(
        family, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, 0
    )
    body += _RTATTR.pack(_RTATTR.size + len(dst), RTA_DST) + dst  # 8 or 20 bytes: aligned
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWROUTE, flags, seq, 0) + body


def add_unreachable_routes(networks: Sequence[Network]) -> None:
    """Add an ``unreachable`` route for each network to the current namespace's main table."""
    if not networks:
        return
    with _netlink() as sock:
        sock.sendto(b"".join(_route_message(i, n) for i, n in enumerate(networks, 1)), (0, 0))
        pending = set(range(1, len(networks) + 1))
        while pending:
            for kind, seq, payload in _messages(sock.recv(65536)):
                if kind != NLMSG_ERROR or seq not in pending:
                    continue
                pending.discard(seq)
                (error,) = _ERRNO.unpack_from(payload)
                if error:
                    network = networks[seq - 1]
                    raise OSError(-error, f"adding the route 'unreachable {network}': {os.strerror(-error)}")


def host_addresses() -> list[Address]:
    """Every address of the current network namespace's interfaces (one rtnetlink dump)."""
    request = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    found: list[Address] = []
    with _netlink() as sock:
        sock.sendto(header + request, (0, 0))
        while True:
            for kind, _, payload in _messages(sock.recv(65536)):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (error,) = _ERRNO.unpack_from(payload)
                    raise OSError(-error, f"listing the host's addresses: {os.strerror(-error)}")
                if kind != RTM_NEWADDR:
                    continue
                attributes = _attributes(payload[_IFADDRMSG.size :])
                raw = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
                if raw is not None and len(raw) in (4, 16):
                    found.append(ipaddress.ip_address(raw))


# nf_tables, just one table: slirp's DNS forwarder answers DNS and nothing else.
#
# slirp sends whatever reaches 10.0.2.3, on any port, to the host's own
# resolver (the first nameserver of the host's /etc/resolv.conf), which may be
# a private or a metadata address (169.254.169.254 on some clouds). So inside
# the instance, in the output hook:
#     ip daddr 10.0.2.3 udp dport 53 accept
#     ip daddr 10.0.2.3 tcp dport 53 accept
#     ip daddr 10.0.2.3 meta l4proto tcp reject with tcp reset    (connect: ECONNREFUSED at once)
#     ip daddr 10.0.2.3 drop                                      (send: EPERM at once)
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE = 0, 3, 6
NFPROTO_IPV4 = 2
NF_INET_LOCAL_OUT = 3
NF_DROP, NF_ACCEPT = 0, 1
NFT_REJECT_TCP_RST = 1
NLA_F_NESTED = 0x8000
NLM_F_APPEND = 0x800  # a rule goes after the others (before them without it)
NFT_TABLE = b"wuzhao"
NFT_CHAIN = b"output"
_NFGENMSG = struct.Struct("!BBH")  # family, version, resource id (big-endian)


def _attr(kind: int, value: bytes) -> bytes:
    padding = b"\0" * (-(len(value)) % 4)
    return _RTATTR.pack(_RTATTR.size + len(value), kind) + value + padding


def _nest(kind: int, *attributes: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attributes))


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("!I", value))  # nf_tables numbers are big-endian


def _name(kind: int, name: bytes) -> bytes:
    return _attr(kind, name + b"\0")


def _expr(name: bytes, *data: bytes) -> bytes:
    return _nest(1, _name(1, name), _nest(2, *data))  # NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }


def _payload(base: int, offset: int, length: int) -> bytes:
    # NFTA_PAYLOAD_DREG (register 1), _BASE (1 network, 2 transport header), _OFFSET, _LEN
    return _expr(b"payload", _u32(1, 1), _u32(2, base), _u32(3, offset), _u32(4, length))


def _equals(value: bytes) -> bytes:
    # NFTA_CMP_SREG (register 1), NFTA_CMP_OP (NFT_CMP_EQ), NFTA_CMP_DATA {NFTA_DATA_VALUE}
    return _expr(b"cmp", _u32(1, 1), _u32(2, 0), _nest(3, _attr(1, value)))


def _verdict(code: int) -> bytes:
    # NFTA_IMMEDIATE_DREG (the verdict register), _DATA {NFTA_DATA_VERDICT {NFTA_VERDICT_CODE}}
    return _expr(b"immediate", _u32(1, 0), _nest(2, _nest(2, _u32(1, code))))


def _to_dns(*match: bytes) -> list[bytes]:
    return [_payload(1, 16, 4), _equals(SLIRP_DNS.packed), *match]  # ip daddr == 10.0.2.3


def _l4proto(protocol: int) -> list[bytes]:
    # NFTA_META_DREG (register 1), NFTA_META_KEY (NFT_META_L4PROTO)
    return [_expr(b"meta", _u32(1, 1), _u32(2, 16)), _equals(bytes([protocol]))]


def _dns_filter_messages() -> list[tuple[int, bytes]]:
    """(message type, attributes) of the table, its chain and its four rules."""
    table = _name(1, NFT_TABLE)  # NFTA_TABLE_NAME (NFTA_CHAIN_TABLE, NFTA_RULE_TABLE: 1 too)
    hook = _nest(4, _u32(1, NF_INET_LOCAL_OUT), _u32(2, 0))  # NFTA_CHAIN_HOOK {HOOKNUM, PRIORITY}
    # NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TYPE
    chain = table + _name(3, NFT_CHAIN) + hook + _u32(5, NF_ACCEPT) + _name(7, b"filter")
    rule = table + _name(2, NFT_CHAIN)  # NFTA_RULE_CHAIN; the expressions follow as NFTA_RULE_EXPRESSIONS
    port_53 = [_payload(2, 2, 2), _equals(struct.pack("!H", 53))]  # transport header: dport
    reset = _expr(b"reject", _u32(1, NFT_REJECT_TCP_RST))  # NFTA_REJECT_TYPE
    rules = [
        _to_dns(*_l4proto(socket.IPPROTO_UDP), *port_53, _verdict(NF_ACCEPT)),
        _to_dns(*_l4proto(socket.IPPROTO_TCP), *port_53, _verdict(NF_ACCEPT)),
        _to_dns(*_l4proto(socket.IPPROTO_TCP), reset),
        _to_dns(_verdict(NF_DROP)),
    ]
    messages = [(NFT_MSG_NEWTABLE, table), (NFT_MSG_NEWCHAIN, chain)]
    return messages + [(NFT_MSG_NEWRULE, rule + _nest(4, *expressions)) for expressions in rules]


def _nfnl(kind: int, flags: int, seq: int, family: int, resource: int, attributes: bytes) -> bytes:
    body = _NFGENMSG.pack(family, 0, resource) + attributes
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def filter_slirp_dns() -> None:
    """Install the nf_tables table above in the current network namespace (one batch)."""
    contents = _dns_filter_messages()
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    batch = [_nfnl(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")]
    for seq, (kind, attributes) in enumerate(contents, 2):
        order = NLM_F_APPEND if kind == NFT_MSG_NEWRULE else 0
        batch.append(_nfnl(NFNL_SUBSYS_NFTABLES << 8 | kind, flags | order, seq, NFPROTO_IPV4, 0, attributes))
    end = len(contents) + 2
    batch.append(_nfnl(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b""))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.sendto(b"".join(batch), (0, 0))
        pending = set(range(2, end))
        while pending:
            for kind, seq, payload in _messages(sock.recv(65536)):
                if kind != NLMSG_ERROR:
                    continue
                (error,) = _ERRNO.unpack_from(payload)
                if error:
                    raise OSError(-error, f"nf_tables message {seq} failed: {os.strerror(-error)}")
                pending.discard(seq)


# The child's side: runs after the fork, as root, in the instance's new namespaces.


def announce(channel: int) -> None:
    """Just after unshare: keep IPv6 off the coming tap0, then tell the worker to attach slirp."""
    try:
        fd = os.open("/proc/sys/net/ipv6/conf/default/disable_ipv6", os.O_WRONLY)
    except FileNotFoundError:
        pass  # a kernel without IPv6
    else:
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    os.write(channel, NETNS_MADE)


def seal(channel: int, routes: Sequence[str]) -> None:
    """Wait until slirp4netns configured tap0, then add the unreachable routes and the DNS filter."""
    answer = os.read(channel, 1)
    if answer != ATTACHED:
        raise RuntimeError(f"the worker did not attach the network (got {answer!r})")
    networks = [ipaddress.ip_network(r) for r in routes]
    if not os.path.exists("/proc/sys/net/ipv6"):
        networks = [n for n in networks if n.version == 4]
    add_unreachable_routes(networks)
    filter_slirp_dns()
