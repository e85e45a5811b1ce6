"""The codec, packet by packet: what kdns reads, what it rejects and how, what it writes."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from dnslib import AAAA, QTYPE, RR, SOA, SRV, A
from hypothesis import given
from hypothesis import strategies as st

from kdns.message import Answer, Query
from kdns.wire.codec import EDNS_PAYLOAD, Rejected, from_wire, servfail, to_wire

HEADER = struct.Struct("!6H")


def wire(name: str = "web.default.svc.cluster.local.", rdtype: str = "A", **make: object) -> bytes:
    """A query packet, as dnspython writes it."""
    message = dns.message.make_query(name, rdtype, **make)
    message.id = 0x1234
    return message.to_wire()


def question(name: bytes = b"\x03web\x07default\x00", qtype: int = 1, qclass: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def packet(*parts: bytes, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return HEADER.pack(0xBEEF, flags, qd, an, ns, ar) + b"".join(parts)


def opt(payload: int = 4096, version: int = 0, do: bool = False, name: bytes = b"\x00") -> bytes:
    ttl = version << 16 | (0x8000 if do else 0)
    return name + struct.pack("!HHIH", 41, payload, ttl, 0)


def rejected(data: bytes) -> tuple[Rejected, dns.message.Message]:
    result = from_wire(data)
    assert isinstance(result, Rejected), result
    return result, dns.message.from_wire(result.reply)


def query(**fields: object) -> Query:
    defaults: dict[str, object] = {"id": 0x1234, "qname": "Web.Default.svc.Cluster.Local.", "qtype": QTYPE.A}
    defaults.update(fields)
    return Query(**defaults)  # type: ignore[arg-type]


def a_records(owner: str, count: int) -> tuple[RR, ...]:
    return tuple(RR(owner, QTYPE.A, rdata=A(f"10.0.{i // 256}.{i % 256}"), ttl=5) for i in range(count))


# --- reading ---------------------------------------------------------------------------


def test_reads_a_plain_query() -> None:
    """A well-formed query becomes a Query with the asker's spelling, flags, client and transport."""
    result = from_wire(wire("Web.Default.SVC.cluster.local.", "SRV"), "192.0.2.7", "tcp")
    assert result == Query(
        id=0x1234,
        qname="Web.Default.SVC.cluster.local.",
        qtype=QTYPE.SRV,
        qclass=1,
        rd=True,
        cd=False,
        edns=False,
        payload=512,
        do=False,
        client="192.0.2.7",
        transport="tcp",
    )
    assert result.name == "web.default.svc.cluster.local."


def test_reads_rd_and_cd_flags() -> None:
    """RD and CD are read from the header as sent."""
    message = dns.message.make_query("a.test.", "A")
    message.flags = dns.flags.CD
    result = from_wire(message.to_wire())
    assert isinstance(result, Query)
    assert (result.rd, result.cd) == (False, True)


def test_reads_the_root_name() -> None:
    """The root name reads as a single dot."""
    result = from_wire(packet(question(b"\x00", qtype=2)))
    assert isinstance(result, Query) and result.qname == "."


@pytest.mark.parametrize(
    ("advertised", "payload"),
    [(None, 512), (4096, EDNS_PAYLOAD), (1232, 1232), (1400, 1232), (1000, 1000), (512, 512), (300, 512), (0, 512)],
)
def test_payload_is_the_clients_size_within_512_and_1232(advertised: int | None, payload: int) -> None:
    """The reply size limit is the client's EDNS size, at least 512 (RFC 6891 §6.2.5) and at most ours, 1232."""
    data = wire() if advertised is None else wire(use_edns=0, payload=advertised)
    result = from_wire(data)
    assert isinstance(result, Query)
    assert result.payload == payload
    assert result.edns is (advertised is not None)


def test_reads_the_do_bit() -> None:
    """The DNSSEC OK bit of the OPT record is read (RFC 3225)."""
    result = from_wire(wire(use_edns=0, want_dnssec=True))
    assert isinstance(result, Query) and result.do and result.edns


def test_ignores_edns_options() -> None:
    """EDNS options kdns does not implement (a cookie here) are ignored, not rejected (RFC 6891 §6.1.2)."""
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    result = from_wire(wire(use_edns=0, options=[cookie]))
    assert isinstance(result, Query) and result.edns


@pytest.mark.parametrize(
    "data",
    [b"", b"\x12", b"\x12\x34" + b"\x00" * 9],
    ids=["empty", "one byte", "eleven bytes"],
)
def test_drops_packets_shorter_than_a_header(data: bytes) -> None:
    """Fewer than 12 bytes is not a DNS message: no reply at all."""
    assert from_wire(data) is None


def test_drops_responses() -> None:
    """A packet with QR set is a response; answering it could start a loop, so it is dropped."""
    assert from_wire(packet(question(), flags=0x8100)) is None


@pytest.mark.parametrize(
    ("data", "echoes_question"),
    [
        (packet(b"\x03web"), False),
        (packet(b"\x03web\x00\x00"), False),
        (packet(b"\x40" + b"x" * 64 + b"\x00\x00\x01\x00\x01"), False),
        (packet(b"\xc0\x0c\x00\x01\x00\x01"), False),
        (
            packet(
                question(
                    b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00"
                )
            ),
            False,
        ),
        (packet(question(), b"junk"), True),
        (packet(question(), b"\x00\x00\x01", ar=1), True),
        (packet(question(), b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x10ab", ar=1), True),
        (packet(question(), b"\xc0", an=1), True),
    ],
    ids=[
        "cut label",
        "cut type",
        "label over 63",
        "pointer in question",
        "name over 255",
        "trailing bytes",
        "cut record",
        "rdata past end",
        "cut pointer",
    ],
)
def test_malformed_is_formerr(data: bytes, echoes_question: bool) -> None:
    """An unreadable message after a readable header gets FORMERR with its ID, and its question if that was readable."""
    result, reply = rejected(data)
    assert result.rcode == dns.rcode.FORMERR
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == 0xBEEF
    assert reply.flags & dns.flags.QR
    assert len(reply.question) == (1 if echoes_question else 0)


@pytest.mark.parametrize("count", [0, 2])
def test_not_exactly_one_question_is_formerr(count: int) -> None:
    """A query must ask exactly one question; zero or several get FORMERR."""
    _result, reply = rejected(packet(*[question()] * count, qd=count))
    assert reply.rcode() == dns.rcode.FORMERR
    assert len(reply.question) == 0
    assert reply.id == 0xBEEF


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_other_opcodes_are_notimp(opcode: int) -> None:
    """Only QUERY is implemented; other opcodes get NOTIMP with the opcode and question echoed."""
    # SOA: an UPDATE's zone section must name one, or dnspython cannot read the reply.
    _result, reply = rejected(packet(question(qtype=6), flags=dns.opcode.to_flags(opcode)))
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == opcode
    assert len(reply.question) == 1


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY", "NONE"])
def test_classes_other_than_in_are_refused(rdclass: str) -> None:
    """kdns serves only class IN; CHAOS (`version.bind`), HESIOD, ANY and NONE are REFUSED."""
    data = wire("version.bind.", "TXT", rdclass=rdclass)
    _result, reply = rejected(data)
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.question[0].rdclass == dns.rdataclass.from_text(rdclass)
    assert reply.id == 0x1234


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(rdtype: str) -> None:
    """kdns does not transfer zones: AXFR and IXFR are REFUSED, as CoreDNS's kubernetes plugin does."""
    message = dns.message.make_query("cluster.local.", rdtype)
    _result, reply = rejected(message.to_wire())
    assert reply.rcode() == dns.rcode.REFUSED


def test_edns_version_above_zero_is_badvers() -> None:
    """EDNS version 1 gets BADVERS (extended rcode 16) with our OPT at version 0 (RFC 6891 §6.1.3)."""
    result, reply = rejected(wire(use_edns=1, want_dnssec=True))
    assert result.rcode == 16
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert reply.payload == EDNS_PAYLOAD
    assert reply.ednsflags & dns.flags.DO
    assert reply.flags & 0xF == 0
    assert len(reply.question) == 1


def test_two_opt_records_are_formerr() -> None:
    """More than one OPT record is FORMERR (RFC 6891 §6.1.1)."""
    _result, reply = rejected(packet(question(), opt(), opt(), ar=2))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == -1


def test_opt_outside_additional_is_formerr() -> None:
    """An OPT record in the answer section is FORMERR."""
    _result, reply = rejected(packet(question(), opt(), an=1))
    assert reply.rcode() == dns.rcode.FORMERR


def test_opt_with_an_owner_name_is_formerr() -> None:
    """An OPT record's owner must be the root name."""
    _result, reply = rejected(packet(question(), opt(name=b"\x01x\x00"), ar=1))
    assert reply.rcode() == dns.rcode.FORMERR


def test_error_replies_carry_opt_when_the_query_did() -> None:
    """A REFUSED reply to an EDNS query carries our OPT record, DO echoed (RFC 6891 §7)."""
    _result, reply = rejected(wire("version.bind.", "TXT", rdclass="CH", use_edns=0, want_dnssec=True))
    assert reply.edns == 0 and reply.payload == EDNS_PAYLOAD
    assert reply.ednsflags & dns.flags.DO


def test_escaped_labels_read_as_presentation_text() -> None:
    """Dots, backslashes, spaces and non-ASCII bytes inside a label read as \\DDD escapes."""
    result = from_wire(packet(question(b"\x05a.b\\ \x02\xffZ\x00")))
    assert isinstance(result, Query)
    assert result.qname == "a\\046b\\092\\032.\\255Z."


# --- writing ---------------------------------------------------------------------------


def test_reply_sets_every_header_flag() -> None:
    """ID, QR, AA, RD, RA, CD and rcode come from the query and the answer, nothing else."""
    asked = query(rd=True, cd=True)
    reply = dns.message.from_wire(to_wire(asked, Answer(rcode=3, authoritative=True, recursion_available=True), 512))
    assert reply.id == 0x1234
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & 0xFFF0 == dns.flags.QR | dns.flags.AA | dns.flags.RD | dns.flags.RA | dns.flags.CD
    quiet = dns.message.from_wire(to_wire(query(rd=False), Answer(), 512))
    assert quiet.flags & 0xFFF0 == dns.flags.QR


def test_reply_echoes_the_question_exactly() -> None:
    """The question goes back byte for byte, mixed case included (RFC 4343), escaped bytes too."""
    data = packet(question(b"\x03WeB\x05a.b\\ \x02\xffZ\x07ClUsTeR\x00", qtype=33))
    asked = from_wire(data)
    assert isinstance(asked, Query)
    reply = to_wire(asked, Answer(), 512)
    assert reply[12:] == data[12:]
    assert reply[:2] == data[:2]


def test_reply_packs_records_with_compression() -> None:
    """Answer, authority and additional records arrive intact; owner names point at the question."""
    asked = query(qtype=QTYPE.SRV)
    owner = asked.qname
    answer = Answer(
        answer=(RR(owner, QTYPE.SRV, rdata=SRV(0, 100, 80, owner), ttl=5),),
        authority=(
            RR(
                "Cluster.Local.",
                QTYPE.SOA,
                rdata=SOA("ns.dns.cluster.local.", "hostmaster.cluster.local.", (7, 7200, 1800, 86400, 5)),
                ttl=5,
            ),
        ),
        additional=(
            RR(owner, QTYPE.A, rdata=A("10.96.0.10"), ttl=5),
            RR(owner, QTYPE.AAAA, rdata=AAAA("fd00:10:96::a"), ttl=5),
        ),
        authoritative=True,
    )
    data = to_wire(asked, answer, 512)
    reply = dns.message.from_wire(data)
    assert [str(rrset.name) for rrset in reply.answer] == [owner]
    assert reply.answer[0][0].port == 80
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
    assert sorted(rrset.rdtype for rrset in reply.additional) == [dns.rdatatype.A, dns.rdatatype.AAAA]
    # Every later owner is a pointer; the SRV target is written out (RFC 2782: no compression).
    assert data.count(b"\x03Web") == 2


def test_reply_to_edns_query_has_our_opt() -> None:
    """An EDNS query gets an OPT record: payload 1232, version 0, DO echoed; others get none."""
    with_edns = dns.message.from_wire(to_wire(query(edns=True, payload=1232, do=True), Answer(), 1232))
    assert (with_edns.edns, with_edns.payload) == (0, EDNS_PAYLOAD)
    assert with_edns.ednsflags & dns.flags.DO
    without = dns.message.from_wire(to_wire(query(), Answer(), 512))
    assert without.edns == -1


def test_extended_rcode_goes_into_opt() -> None:
    """An rcode above 15 is split between the header and the OPT record (RFC 6891 §6.1.3)."""
    reply = dns.message.from_wire(to_wire(query(edns=True), Answer(rcode=23), 512))
    assert reply.rcode() == 23  # BADCOOKIE
    assert reply.flags & 0xF == 23 & 0xF


@pytest.mark.parametrize(
    ("edns", "payload", "truncated"),
    [(False, 512, True), (True, 512, True), (True, 1232, False)],
)
def test_too_big_for_udp_is_truncated_to_an_empty_reply(edns: bool, payload: int, truncated: bool) -> None:
    """An answer over the client's size is sent as header, question and OPT with TC and nothing else."""
    asked = query(edns=edns, payload=payload)
    answer = Answer(answer=a_records(asked.qname, 60), authoritative=True)  # ~1000 bytes
    data = to_wire(asked, answer, asked.payload)
    reply = dns.message.from_wire(data)
    assert len(data) <= payload
    assert bool(reply.flags & dns.flags.TC) is truncated
    assert len(reply.question) == 1
    assert (reply.edns == 0) is edns
    if truncated:
        assert reply.answer == [] and reply.authority == [] and reply.additional == []
        assert reply.flags & dns.flags.AA
    else:
        assert len(reply.answer[0]) == 60


def test_additional_that_does_not_fit_is_dropped_without_tc() -> None:
    """Additional records are dropped first, and that alone does not set TC (RFC 2181 §9)."""
    asked = query(qtype=QTYPE.SRV, edns=True, payload=512)
    owner = asked.qname
    answer = Answer(
        answer=(RR(owner, QTYPE.SRV, rdata=SRV(0, 100, 80, owner), ttl=5),),
        additional=a_records(owner, 60),
    )
    reply = dns.message.from_wire(to_wire(asked, answer, asked.payload))
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer) == 1 and reply.additional == []
    assert reply.edns == 0


def test_tcp_replies_past_16k_compress_correctly() -> None:
    """Past 16 KiB compression pointers cannot reach, so names are written out, never wrapped."""
    asked = query(transport="tcp")
    # 1100 compressed records fill 17 KiB; "other.example." first appears past 16 KiB.
    answer = Answer(answer=a_records(asked.qname, 1100) + a_records("other.example.", 500))
    data = to_wire(asked, answer, 65535)
    assert len(data) > 0x4000 + 500 * len(b"\x05other\x07example\x00")
    reply = dns.message.from_wire(data)
    owners = sorted(str(rrset.name) for rrset in reply.answer)
    assert owners == ["Web.Default.svc.Cluster.Local.", "other.example."]
    assert [len(rrset) for rrset in reply.answer] == [1100, 500]


def test_tcp_replies_past_64k_are_truncated() -> None:
    """Even TCP has a limit: over 65535 bytes, the reply is truncated like a UDP one."""
    asked = query(transport="tcp")
    answer = Answer(answer=a_records(asked.qname, 5000))
    reply = dns.message.from_wire(to_wire(asked, answer, 65535))
    assert reply.flags & dns.flags.TC and reply.answer == []


def test_servfail_echoes_id_and_question() -> None:
    """servfail() is a SERVFAIL reply to the query, with its ID, question and OPT."""
    reply = dns.message.from_wire(servfail(query(edns=True, rd=True)))
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert reply.id == 0x1234
    assert str(reply.question[0].name) == "Web.Default.svc.Cluster.Local."
    assert reply.edns == 0


# --- properties ------------------------------------------------------------------------


@given(st.binary(max_size=600))
def test_any_bytes_are_read_without_raising(data: bytes) -> None:
    """from_wire is total: any bytes give a Query, a Rejected reply that parses and keeps the ID, or None."""
    result = from_wire(data)
    if isinstance(result, Rejected):
        reply = dns.message.from_wire(result.reply)
        assert reply.id == int.from_bytes(data[:2], "big")
        assert reply.flags & dns.flags.QR
    elif isinstance(result, Query):
        reply = dns.message.from_wire(to_wire(result, Answer(), result.payload))
        assert reply.id == result.id


labels = st.lists(st.binary(min_size=1, max_size=63), max_size=4)


@given(labels, st.integers(0, 65535), st.integers(0, 0xFFFF))
def test_any_question_is_echoed_exactly(name_labels: list[bytes], qtype: int, ident: int) -> None:
    """Whatever bytes a question's labels hold, the reply repeats the question byte for byte."""
    if qtype in (41, 251, 252):
        qtype = 1
    name = b"".join(bytes([len(label)]) + label for label in name_labels) + b"\x00"
    data = HEADER.pack(ident, 0, 1, 0, 0, 0) + question(name, qtype)
    asked = from_wire(data)
    assert isinstance(asked, Query)
    reply = to_wire(asked, Answer(), 512)
    assert reply[12:] == data[12:]
    assert reply[:2] == data[:2]
