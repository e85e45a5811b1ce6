"""Address texts read in C, for the hot paths of a big load.

`ipaddress` is exact and slow (about 1.8 µs to read a dotted quad); a load of 100,000 pods
reads each pod's address in the store, the EndpointSlice controller and the index, and
10,000 services their cluster IPs. socket's inet_* functions are pure conversions in C;
nothing here opens a socket (the import-linter contract names this module as the one
exception to "no socket in the registry").
"""

from __future__ import annotations

from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_aton, inet_ntoa, inet_pton


def _pton_dotted_quad(text: str) -> bytes | None:
    """dotted_quad where inet_pton reads only ipaddress's spelling (`_pton_is_strict`)."""
    try:
        return inet_pton(AF_INET, text)
    except (OSError, TypeError, ValueError):  # ValueError: a NUL or a lone surrogate
        return None


def _round_trip_dotted_quad(text: str) -> bytes | None:
    """dotted_quad anywhere: inet_aton reads more than ipaddress does (`1.2`, `010.0.0.1`
    in octal, `0x7f.0.0.1`, `1.2.3.4 and more`), but inet_ntoa writes the one spelling
    ipaddress takes: what reads back as written is that."""
    try:
        packed = inet_aton(text)
    except (OSError, TypeError, ValueError):
        return None
    return packed if inet_ntoa(packed) == text else None


def _pton_is_strict() -> bool:
    """Whether this C library's inet_pton refuses a leading zero (as glibc, musl and the
    BSDs do; POSIX lets one pass) and every other spelling ipaddress refuses."""
    return all(_pton_dotted_quad(text) is None for text in ("01.2.3.4", "1.2.3.00", "1.2.3", "0x1.2.3.4", "1.2.3.4 "))


# dotted_quad(text): the packed IPv4 address `text` writes as ipaddress writes one (four
# decimal octets, 0-255, no leading zeros): the common case. None for anything else, which
# may still be an address for ipaddress to read. inet_pton alone where it reads just that
# spelling: a third of the time of the round trip (about 100 ns, not 300), which the
# 100,000 pods' addresses read in the store, the EndpointSlice controller and the index
# notice.
dotted_quad: Callable[[str], bytes | None] = _pton_dotted_quad if _pton_is_strict() else _round_trip_dotted_quad


def ipv4_text(value: int) -> str:
    """str(ipaddress.IPv4Address(value))."""
    return inet_ntoa(value.to_bytes(4, "big"))


def packed(text: str) -> bytes:
    """The packed form of a valid address text (IPv4 or IPv6, as validation accepts
    them), which sorts in numeric order within a family."""
    return inet_pton(AF_INET6 if ":" in text else AF_INET, text)
