"""Cluster IP and node port allocation: deterministic, never twice, undone on rollback."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.registry.allocator import (
    AllocationError,
    AlreadyAllocated,
    ClusterIPAllocator,
    NodePortAllocator,
    NotConfigured,
    NotInRange,
    RangeFull,
)


def test_dynamic_cluster_ips_start_above_the_static_band():
    """As kube-apiserver, allocation starts above the low band kept for hand-picked addresses."""
    allocator = ClusterIPAllocator(["10.96.0.0/12", "fd00:10:96::/112"])
    assert allocator.families == ("IPv4", "IPv6")
    assert [allocator.allocate("IPv4") for _ in range(3)] == ["10.96.1.1", "10.96.1.2", "10.96.1.3"]
    assert allocator.allocate("IPv6") == "fd00:10:96::101"


def test_hand_picked_addresses_in_the_static_band_are_honoured():
    """kube-dns's 10.96.0.10 can be reserved, once."""
    allocator = ClusterIPAllocator(["10.96.0.0/12"])
    assert allocator.reserve("10.96.0.10") == "10.96.0.10"
    assert allocator.is_allocated("10.96.0.10")
    with pytest.raises(AlreadyAllocated) as caught:
        allocator.reserve("10.96.0.10")
    assert str(caught.value) == "provided IP is already allocated"


def test_addresses_outside_the_range_are_honoured_once():
    """An explicit address outside every range is kept (manifests from real clusters), but not twice."""
    allocator = ClusterIPAllocator(["10.96.0.0/12"])
    assert allocator.reserve("172.20.0.10") == "172.20.0.10"
    assert allocator.reserve("fd00::0010") == "fd00::10"
    with pytest.raises(AlreadyAllocated):
        allocator.reserve("fd00::10")
    allocator.release("fd00::10")
    assert allocator.reserve("fd00::10") == "fd00::10"


def test_network_and_broadcast_addresses_are_never_allocated():
    """A /29 hands out its six host addresses, then is full; an IPv6 /126 its three."""
    allocator = ClusterIPAllocator(["192.168.0.0/29", "fd00::/126"])
    assert sorted(allocator.allocate("IPv4") for _ in range(6)) == [f"192.168.0.{i}" for i in range(1, 7)]
    with pytest.raises(RangeFull) as caught:
        allocator.allocate("IPv4")
    assert str(caught.value) == "range is full: 192.168.0.0/29"
    assert sorted(allocator.allocate("IPv6") for _ in range(3)) == ["fd00::1", "fd00::2", "fd00::3"]


def test_released_addresses_come_back_after_the_cursor_wraps():
    """The cursor moves on, so a just-released address is not reused at once."""
    allocator = ClusterIPAllocator(["192.168.0.0/29"])
    first = allocator.allocate("IPv4")
    allocator.release(first)
    assert allocator.allocate("IPv4") == "192.168.0.2"
    assert [allocator.allocate("IPv4") for _ in range(5)] == [
        "192.168.0.3", "192.168.0.4", "192.168.0.5", "192.168.0.6", "192.168.0.1",
    ]


def test_unconfigured_family():
    """Allocating from a family without a range says so."""
    allocator = ClusterIPAllocator(["10.96.0.0/12"])
    with pytest.raises(NotConfigured) as caught:
        allocator.allocate("IPv6")
    assert str(caught.value) == "no IPv6 service CIDR is configured"


def test_bad_configuration_is_refused():
    """Two ranges of one family, or a range with no host address, are configuration errors."""
    with pytest.raises(AllocationError) as caught:
        ClusterIPAllocator(["10.96.0.0/12", "10.100.0.0/16"])
    assert str(caught.value) == "service CIDR 10.100.0.0/16: a second IPv4 range"
    with pytest.raises(AllocationError) as caught:
        ClusterIPAllocator(["10.0.0.0/31"])
    assert str(caught.value) == "service CIDR 10.0.0.0/31: too small to allocate from"
    with pytest.raises(AllocationError) as caught:
        ClusterIPAllocator(["10.96.0.0/12"]).reserve("ten")
    assert str(caught.value) == "'ten' is not an IP address"


def test_ten_thousand_cluster_ips():
    """Ten thousand allocations from a /12 are distinct and sequential (amortised O(1))."""
    allocator = ClusterIPAllocator(["10.96.0.0/12"])
    ips = [allocator.allocate("IPv4") for _ in range(10_000)]
    assert len(set(ips)) == 10_000
    assert ips[-1] == str(ipaddress.ip_address("10.96.1.1") + 9_999)


def test_rollback_restores_addresses_and_cursor():
    """Everything since a savepoint is undone, the cursor included, so the next allocation repeats."""
    allocator = ClusterIPAllocator(["10.96.0.0/12"])
    allocator.reserve("10.96.0.10")
    savepoint = allocator.savepoint()
    assert allocator.allocate("IPv4") == "10.96.1.1"
    allocator.release("10.96.0.10")
    allocator.reserve("172.20.0.1")
    allocator.rollback(savepoint)
    assert allocator.is_allocated("10.96.0.10")
    assert not allocator.is_allocated("10.96.1.1")
    assert not allocator.is_allocated("172.20.0.1")
    assert allocator.allocate("IPv4") == "10.96.1.1"
    allocator.commit()
    allocator.rollback()  # nothing recorded any more
    assert allocator.is_allocated("10.96.1.1")


def test_node_ports_start_above_the_static_band():
    """Dynamic node ports start at 30086 for the default range, leaving 30000-30085 to hand-picking."""
    allocator = NodePortAllocator(30000, 32767)
    assert [allocator.allocate() for _ in range(2)] == [30086, 30087]
    assert allocator.reserve(30007) == 30007


def test_node_port_reservations_are_checked():
    """A taken or out-of-range node port is refused with kube-apiserver's words."""
    allocator = NodePortAllocator(30000, 32767)
    allocator.reserve(30007)
    with pytest.raises(AlreadyAllocated) as caught:
        allocator.reserve(30007)
    assert str(caught.value) == "provided port is already allocated"
    with pytest.raises(NotInRange) as caught:
        allocator.reserve(8080)
    assert str(caught.value) == (
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    )
    allocator.release(30007)
    assert allocator.reserve(30007) == 30007


def test_small_node_port_range_fills_up():
    """A range of 3 ports gives 3 ports, then is full."""
    allocator = NodePortAllocator(40000, 40002)
    assert sorted(allocator.allocate() for _ in range(3)) == [40000, 40001, 40002]
    with pytest.raises(RangeFull) as caught:
        allocator.allocate()
    assert str(caught.value) == "range is full: 40000-40002"
    with pytest.raises(AllocationError) as caught:
        NodePortAllocator(10, 5)
    assert str(caught.value) == "node port range 10-5: need 1 <= low <= high <= 65535"


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), st.just(0)),
        st.tuples(st.just("reserve"), st.integers(0, 20)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("savepoint"), st.just(0)),
        st.tuples(st.just("rollback"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(OPERATIONS)
def test_node_ports_are_never_handed_out_twice(operations):
    """Whatever the order of operations, a port is held at most once, and rollback returns to the savepoint."""
    allocator = NodePortAllocator(100, 115)
    held: set[int] = set()
    saved: list[tuple[int, set[int]]] = []
    for operation, value in operations:
        if operation == "allocate":
            if len(held) == 16:
                with pytest.raises(RangeFull):
                    allocator.allocate()
            else:
                port = allocator.allocate()
                assert port not in held and 100 <= port <= 115
                held.add(port)
        elif operation == "reserve":
            port = 100 + value
            if port > 115:
                with pytest.raises(NotInRange):
                    allocator.reserve(port)
            elif port in held:
                with pytest.raises(AlreadyAllocated):
                    allocator.reserve(port)
            else:
                allocator.reserve(port)
                held.add(port)
        elif operation == "release":
            allocator.release(100 + value)
            held.discard(100 + value)
        elif operation == "savepoint":
            saved.append((allocator.savepoint(), set(held)))
        elif saved:
            savepoint, held = saved.pop()
            allocator.rollback(savepoint)
        assert {p for p in range(100, 116) if allocator.is_allocated(p)} == held


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["allocate4", "allocate6", "release"]), max_size=40), st.randoms(use_true_random=False))
def test_cluster_ips_are_never_handed_out_twice(operations, random):
    """Allocations and releases in any order never give one address to two holders."""
    allocator = ClusterIPAllocator(["10.0.0.0/28", "fd00::/124"])
    held: list[str] = []
    for operation in operations:
        if operation == "release" and held:
            allocator.release(held.pop(random.randrange(len(held))))
        elif operation != "release":
            family = "IPv4" if operation == "allocate4" else "IPv6"
            try:
                ip = allocator.allocate(family)
            except RangeFull:
                continue
            assert ip not in held
            held.append(ip)
    assert all(allocator.is_allocated(ip) for ip in held)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda o: ".".join(map(str, o))),
    st.sampled_from([
        "10.96.0.10", "010.96.0.10", "10.96.0.010", "10.96.10", "10.96.0.10 ", " 10.96.0.10", "0x0a.96.0.10",
        "10.96.0.10\x00", "10.96.0.1.0", "10.96.0.", "", "1", "10.96.0.0", "10.111.255.255", "10.112.0.0",
        "172.20.0.10", "::ffff:10.96.0.10", "fd00::10", "10.96.0.\u0661", "10.96.0.\ud800",
    ]),
))
def test_reserve_reads_addresses_as_ipaddress_does(text):
    """Dotted quads take a path without ipaddress: every spelling still reads as ipaddress
    reads it, is refused with the same message, and is held once."""
    allocator = ClusterIPAllocator(["10.96.0.0/12", "fd00:10:96::/112"])
    try:
        canonical = str(ipaddress.ip_address(text))
    except ValueError:
        with pytest.raises(AllocationError) as caught:
            allocator.reserve(text)
        assert str(caught.value) == f"{text!r} is not an IP address"
        return
    assert allocator.reserve(text) == canonical
    assert allocator.is_allocated(canonical)
    with pytest.raises(AlreadyAllocated):
        allocator.reserve(canonical)
    allocator.release(text)
    assert not allocator.is_allocated(canonical)
    assert allocator.reserve(canonical) == canonical
