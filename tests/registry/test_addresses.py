"""kdns.registry.addresses reads an address text as ipaddress does, on any C library."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kdns.registry import addresses

_OCTETS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "010", "0x7f", "", " 1", "1 ", "٣", "+1", "-0"]))
_TEXTS = st.one_of(
    st.lists(_OCTETS, min_size=1, max_size=5).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["10.0.0.1\x00", "10.0.0.1 x", "\ud800", "1.2.3.4/32", "::ffff:10.0.0.1", "1.2.3.4\n"]),
    st.text(max_size=16),
)
_READERS = [addresses._pton_dotted_quad, addresses._round_trip_dotted_quad]


def test_dotted_quad_is_inet_pton_where_it_is_strict() -> None:
    # glibc (where the tests run) refuses a leading zero: the quick reader is the one used.
    assert addresses._pton_is_strict()
    assert addresses.dotted_quad is addresses._pton_dotted_quad


@pytest.mark.parametrize("read", _READERS, ids=lambda read: read.__name__)
@given(text=_TEXTS)
@example(text="0.0.0.0")
@example(text="255.255.255.255")
def test_dotted_quad_reads_what_ipaddress_reads(read: Callable[[str], bytes | None], text: str) -> None:
    """An IPv4 address exactly as ipaddress spells one; None for all else."""
    try:
        expected: bytes | None = IPv4Address(text).packed
    except ValueError:
        expected = None
    assert read(text) == expected
    if expected is not None:
        assert str(ip_address(text)) == text  # (the one spelling: what it reads, it writes)
