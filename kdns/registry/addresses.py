"""Address texts read in C, for the hot paths of a big load.

`ipaddress` is exact and slow (about 1.8 µs to read a dotted quad); a load of 100,000 pods
reads each pod's address in the store, the EndpointSlice controller and the index, and
10,000 services their cluster IPs. socket's inet_* functions are pure conversions in C;
nothing here opens a socket (the import-linter contract names this module as the one
exception to "no socket in the registry").
"""

from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_aton, inet_ntoa, inet_pton


def dotted_quad(text: str) -> bytes | None:
    """The packed IPv4 address `text` writes as ipaddress writes one (decimal octets, no
    leading zeros): the common case. None for anything else, which may still be an
    address for ipaddress to read.

    inet_aton reads more than ipaddress does (`1.2`, `010.0.0.1` in octal, `0x7f.0.0.1`,
    `1.2.3.4 and more`), but inet_ntoa writes the one spelling ipaddress takes: what reads
    back as written is that."""
    try:
        packed = inet_aton(text)
    except (OSError, TypeError, ValueError):  # ValueError: a NUL or a lone surrogate
        return None
    return packed if inet_ntoa(packed) == text else None


# str(ipaddress.IPv4Address(packed)) of 4 packed bytes: inet_ntoa itself, not a call of it
# (ClusterIndex.rebuild writes 100,000 pods' addresses so).
packed_ipv4_text = inet_ntoa


def ipv4_text(value: int) -> str:
    """str(ipaddress.IPv4Address(value))."""
    return inet_ntoa(value.to_bytes(4, "big"))


def packed(text: str) -> bytes:
    """The packed form of a valid address text (IPv4 or IPv6, as validation accepts
    them), which sorts in numeric order within a family."""
    return inet_pton(AF_INET6 if ":" in text else AF_INET, text)
