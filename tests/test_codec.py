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
import dns.rrset
import pytest
from dnslib import AAAA, CNAME, MX, NS, PTR, RD, SOA, SRV, A
from hypothesis import given
from hypothesis import strategies as st

from kdns.codec import (
    EDNS_PAYLOAD,
    Malformed,
    Rejected,
    from_wire,
    is_reply_to,
    read_reply,
    request,
    servfail,
    to_wire,
    truncated,
)
from kdns.message import NXDOMAIN, QTYPE, RR, Answer, Query

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


@pytest.mark.parametrize("rdclass", ["CH", "HS", "NONE"])
def test_classes_other_than_in_are_refused(rdclass: str) -> None:
    """kdns serves only class IN; CHAOS (`version.bind`), HESIOD and NONE are REFUSED (ANY is
    answered from IN, as Knot does: tests/e2e/test_standards.py)."""
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


@pytest.mark.parametrize("opcode", [dns.opcode.STATUS, dns.opcode.NOTIFY])
def test_notimp_carries_opt_and_drops_cd_rfc6891_s7(opcode: int) -> None:
    """NOTIMP to an EDNS request has OPT (RFC 6891 §7); RD is echoed, CD (a QUERY flag) is not."""
    flags = dns.opcode.to_flags(opcode) | dns.flags.RD | dns.flags.CD
    _result, reply = rejected(packet(question(qtype=6), opt(do=True), flags=flags, ar=1))
    assert reply.rcode() == dns.rcode.NOTIMP and reply.edns == 0 and reply.ednsflags & dns.flags.DO
    assert reply.flags & dns.flags.RD and not reply.flags & dns.flags.CD


def test_formerr_of_a_wellformed_edns_request_carries_opt_rfc6891_s7() -> None:
    """Two questions with one good OPT: FORMERR, with our OPT."""
    _result, reply = rejected(packet(question(), question(), opt(), qd=2, ar=1))
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == 0


def option(code: int, data: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("!HH", code, len(data) if length is None else length) + data


def opt_with(*options: bytes) -> bytes:
    rdata = b"".join(options)
    return b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(rdata)) + rdata


@pytest.mark.parametrize(
    "options",
    [
        [option(3, length=4)],  # longer than the record
        [option(10, b"12345678"), b"\x00\x03"],  # a torn option header
    ],
)
def test_malformed_option_is_formerr_without_opt_rfc6891_s6_1_2(options: list[bytes]) -> None:
    """Options must add up to RDLENGTH exactly; otherwise FORMERR, and no OPT (it is broken)."""
    _result, reply = rejected(packet(question(), opt_with(*options), ar=1))
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == -1


def test_nsid_request_is_read_rfc5001() -> None:
    """An empty NSID option among others asks for the server's NSID."""
    asked = from_wire(packet(question(), opt_with(option(10, b"12345678"), option(3)), ar=1))
    plain = from_wire(packet(question(), opt_with(option(10, b"12345678")), ar=1))
    assert isinstance(asked, Query) and isinstance(plain, Query)
    assert (asked.nsid, plain.nsid) == (True, False)


def test_qclass_any_is_a_query() -> None:
    """QCLASS ANY (255) is answered, from IN (RFC 1035 §3.2.5), as Knot does."""
    result = from_wire(wire(rdclass="ANY"))
    assert isinstance(result, Query) and result.qclass == 255


def test_ede_and_nsid_are_written_in_opt_rfc8914_rfc5001() -> None:
    """Each ExtendedError is an EDE option; the NSID follows, only for an asker of it."""
    from kdns.message import EdeCode, ExtendedError

    answer = Answer(rcode=5, errors=(ExtendedError(EdeCode.PROHIBITED, "not you"), ExtendedError(EdeCode.OTHER)))
    reply = dns.message.from_wire(to_wire(query(edns=True, nsid=True), answer, 1232, b"replica-1"))
    assert [(o.otype, getattr(o, "code", None), getattr(o, "text", None)) for o in reply.options] == [
        (dns.edns.OptionType.EDE, 18, "not you"),
        (dns.edns.OptionType.EDE, 0, None),
        (dns.edns.OptionType.NSID, None, None),
    ]
    assert reply.options[2].nsid == b"replica-1"
    unasked = dns.message.from_wire(to_wire(query(edns=True), answer, 1232, b"replica-1"))
    assert len(unasked.options) == 2
    without_edns = dns.message.from_wire(to_wire(query(), answer, 512, b"replica-1"))
    assert without_edns.edns == -1


def test_required_glue_that_does_not_fit_is_tc_rfc9471() -> None:
    """A referral's required glue goes with it or the reply is TC; other additional data
    is dropped first, without TC (RFC 2181 §9)."""
    ns = tuple(RR("sub.example.", QTYPE.NS, rdata=NS(f"ns{i}.sub.example."), ttl=300) for i in range(4))
    glue = tuple(RR(f"ns{i}.sub.example.", QTYPE.A, rdata=A(f"192.0.2.{i}"), ttl=300) for i in range(4))
    extra = a_records("sibling.example.", 40)
    asked = query(qname="x.sub.example.")
    fits = dns.message.from_wire(to_wire(asked, Answer(authority=ns, additional=glue + extra, required_glue=4), 512))
    assert not fits.flags & dns.flags.TC and len(lines_of(fits.additional)) == 4
    many = tuple(RR(f"ns{i}.sub.example.", QTYPE.A, rdata=A(f"192.0.2.{i}"), ttl=300) for i in range(40))
    cut = dns.message.from_wire(to_wire(asked, Answer(authority=ns, additional=many, required_glue=40), 512))
    assert cut.flags & dns.flags.TC and not cut.authority and not cut.additional
    optional = dns.message.from_wire(to_wire(asked, Answer(authority=ns, additional=many), 512))
    assert not optional.flags & dns.flags.TC and optional.authority


def lines_of(section: list[dns.rrset.RRset]) -> list[str]:
    return [rr.to_text() for rrset in section for rr in rrset]


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


def test_tcp_replies_past_64k_are_servfail() -> None:
    """Even TCP has a limit, and nothing larger to retry over: an answer over 65535 bytes is
    SERVFAIL, with an Extended DNS Error saying why (RFC 8914), not a truncated reply."""
    asked = query(transport="tcp", edns=True)
    answer = Answer(answer=a_records(asked.qname, 5000))
    reply = dns.message.from_wire(to_wire(asked, answer, 65535))
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.flags & dns.flags.TC and reply.answer == []
    (ede,) = reply.options
    assert ede.otype == dns.edns.OptionType.EDE and "65535" in ede.text


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


# --- record types: what is compressed (RFC 1035 §4.1.4, RFC 3597 §4) -------------------


def test_names_in_rdata_of_the_rfc1035_types_are_compressed() -> None:
    """NS, CNAME, PTR, SOA and MX RDATA names point into earlier names; they read back intact."""
    asked = query(qname="example.com.", qtype=QTYPE.ANY)
    records = (
        RR("example.com.", QTYPE.MX, rdata=MX("mail.example.com.", 10), ttl=60),
        RR("example.com.", QTYPE.NS, rdata=NS("ns.example.com."), ttl=60),
        RR("www.example.com.", QTYPE.CNAME, rdata=CNAME("example.com."), ttl=60),
        RR("ptr.example.com.", QTYPE.PTR, rdata=PTR("www.example.com."), ttl=60),
        RR("example.com.", QTYPE.SOA, rdata=SOA("ns.example.com.", "host.example.com.", (1, 2, 3, 4, 5)), ttl=60),
    )
    data = to_wire(asked, Answer(answer=records), 512)
    assert data.count(b"\x07example\x03com\x00") == 1  # written once, in the question
    reply = dns.message.from_wire(data)
    assert [rrset.to_text() for rrset in reply.answer] == [
        "example.com. 60 IN MX 10 mail.example.com.",
        "example.com. 60 IN NS ns.example.com.",
        "www.example.com. 60 IN CNAME example.com.",
        "ptr.example.com. 60 IN PTR www.example.com.",
        "example.com. 60 IN SOA ns.example.com. host.example.com. 1 2 3 4 5",
    ]


def test_names_in_rdata_of_later_types_are_written_out_rfc3597() -> None:
    """A type defined after RFC 1035 (NAPTR here, RFC 3403 §4.1: "the replacement field
    must not be compressed") keeps its RDATA name uncompressed; a type dnslib has no
    class for is written as its raw RDATA."""
    asked = query(qname="example.com.", qtype=QTYPE.ANY)
    (naptr,) = RR.fromZone('example.com. 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.example.com.')
    raw = RR("example.com.", 65280, rdata=RD(b"\x01\x02\x03"), ttl=60)
    data = to_wire(asked, Answer(answer=(naptr, raw)), 512)
    assert data.count(b"\x07example\x03com\x00") == 2  # the question and the replacement
    reply = dns.message.from_wire(data)
    assert [rrset.to_text() for rrset in reply.answer] == [
        'example.com. 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.example.com.',
        "example.com. 60 IN TYPE65280 \\# 3 010203",
    ]


# --- the forwarder's side --------------------------------------------------------------


@pytest.mark.parametrize(("do", "cd"), [(False, False), (True, False), (False, True), (True, True)])
def test_request_asks_with_rd_edns0_and_the_askers_do_and_cd(do: bool, cd: bool) -> None:
    """An upstream request: the ID given, RD set, CD and DO as the asker set them, EDNS 0
    offering the payload given, the name as spelt."""
    data = request(query(qname="Web.Example.", qtype=QTYPE.AAAA, do=do, cd=cd), 0xABCD, 1400)
    message = dns.message.from_wire(data)
    assert message.id == 0xABCD
    assert message.flags == dns.flags.RD | (dns.flags.CD if cd else 0)
    assert message.edns == 0 and message.payload == 1400
    assert bool(message.ednsflags & dns.flags.DO) == do
    assert message.options == ()
    assert [str(rrset.name) for rrset in message.question] == ["Web.Example."]
    assert message.question[0].rdtype == dns.rdatatype.AAAA
    assert message.question[0].rdclass == dns.rdataclass.IN


def test_request_writes_escaped_labels_as_bytes() -> None:
    r"""`a\.b.example.` is two labels, the first of which holds a dot."""
    data = request(query(qname="a\\.b.example."), 1, 1232)
    assert data[12:].startswith(b"\x03a.b\x07example\x00\x00\x01\x00\x01")


def test_is_reply_to_needs_the_id_qr_opcode_and_question() -> None:
    """A reply must be a response with the request's ID, opcode and question; the question's
    name may come back in another case (0x20 spelling), anything else does not match."""
    sent = request(query(qname="web.example."), 0x1234, 1232)
    message = dns.message.from_wire(sent)

    def reply_of(name: str = "web.example.", rdtype: str = "A", ident: int = 0x1234, opcode: int = 0) -> bytes:
        response = dns.message.make_response(message)
        response.id = ident
        response.set_opcode(opcode)
        response.question = [dns.rrset.RRset(dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))]
        return response.to_wire()

    assert is_reply_to(sent, reply_of())
    assert is_reply_to(sent, reply_of("WEB.Example."))
    assert not is_reply_to(sent, reply_of(ident=0x1235))
    assert not is_reply_to(sent, reply_of("www.example."))
    assert not is_reply_to(sent, reply_of(rdtype="AAAA"))
    assert not is_reply_to(sent, reply_of(opcode=dns.opcode.NOTIFY))
    assert not is_reply_to(sent, sent)  # QR clear: a query, not its reply
    assert not is_reply_to(sent, sent[:11])


def test_read_reply_takes_rcode_and_sections_and_leaves_out_the_opt() -> None:
    """An upstream's NXDOMAIN with its SOA and an OPT record: the Answer has the rcode, the
    SOA, no OPT, RA set and AA not (kdns is not the authority), source upstream."""
    message = dns.message.from_wire(request(query(qname="nope.example."), 7, 1232))
    response = dns.message.make_response(message)
    response.set_rcode(dns.rcode.NXDOMAIN)
    response.flags |= dns.flags.AA
    response.authority.append(dns.rrset.from_text("example.", 300, "IN", "SOA", "ns.example. host.example. 1 2 3 4 5"))
    response.additional.append(dns.rrset.from_text("ns.example.", 300, "IN", "A", "192.0.2.1"))
    answer = read_reply(response.to_wire())
    assert answer.rcode == NXDOMAIN
    assert answer.answer == ()
    assert [rr.toZone() for rr in answer.authority] == [
        "example.                300     IN      SOA     ns.example. host.example. 1 2 3 4 5"
    ]
    assert [(str(rr.rname), rr.rtype) for rr in answer.additional] == [("ns.example.", QTYPE.A)]
    assert (answer.authoritative, answer.recursion_available, answer.source) == (False, True, "upstream")


def test_read_reply_of_unreadable_bytes_is_malformed() -> None:
    """A reply whose records run past its end cannot be read: Malformed, saying so."""
    response = dns.message.make_response(dns.message.from_wire(request(query(), 7, 1232)))
    response.answer.append(dns.rrset.from_text(query().qname, 5, "IN", "A", "10.0.0.1"))
    data = response.to_wire()[:-2]
    with pytest.raises(Malformed, match=r"^unreadable reply: "):
        read_reply(data)


def test_truncated_reads_tc() -> None:
    message = dns.message.from_wire(request(query(), 7, 1232))
    response = dns.message.make_response(message)
    assert not truncated(response.to_wire())
    response.flags |= dns.flags.TC
    assert truncated(response.to_wire())


def _reference_put_name(out: bytearray, names: dict[tuple[bytes, ...], int], labels: tuple[bytes, ...]) -> None:
    """The compression `_put_name` does, the plain way: every suffix lowered, longest first."""
    folded = tuple(label.lower() for label in labels)
    for i, label in enumerate(labels):
        pointer = names.get(folded[i:])
        if pointer is not None:
            out += (0xC000 | pointer).to_bytes(2, "big")
            return
        if len(out) < 0x4000:
            names[folded[i:]] = len(out)
        out.append(len(label))
        out += label
    out.append(0)


_SPELLINGS = st.lists(
    st.lists(st.sampled_from([b"web", b"WEB", b"Web", b"default", b"svc", b"SVC", b"cluster", b"local", b"a"]),
             max_size=5).map(tuple),
    min_size=1, max_size=12,
)


@given(_SPELLINGS, st.integers(0, 0x4000))
def test_put_name_compresses_as_the_plain_way(spellings: list[tuple[bytes, ...]], start: int) -> None:
    """Whole names remembered as spelt change no pointer, wherever the names start
    (past 16 KiB, where nothing more is offered to later names, too)."""
    from kdns.codec import _put_name

    got, want = bytearray(start), bytearray(start)
    got_names: dict[tuple[bytes, ...], int] = {}
    want_names: dict[tuple[bytes, ...], int] = {}
    for labels in spellings:
        _put_name(got, got_names, labels)
        _reference_put_name(want, want_names, labels)
        assert got == want


def test_record_fields_are_dnslibs() -> None:
    """codec reads records' fields where dnslib's properties store them."""
    from kdns.codec import _RECORD_FIELDS, _SRV_RDATA

    rr = RR("web.default.", QTYPE.SRV, ttl=30, rdata=SRV(1, 2, 3, "t.default."))
    assert _RECORD_FIELDS(rr) == (rr.rname, rr.rtype, rr.rclass, rr.ttl, rr.rdata)
    assert _SRV_RDATA(rr.rdata) == (1, 2, 3, rr.rdata.target)
    from kdns.message import record_type

    assert record_type(rr) == rr.rtype == QTYPE.SRV
    assert A((1, 2, 3, 4))._data == A((1, 2, 3, 4)).data


def _reference_read_name(data: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """The question's name read label by label, every bound checked as it comes; None: malformed."""
    labels: list[bytes] = []
    size = 1
    while True:
        if pos >= len(data):
            return None
        length = data[pos]
        if length == 0:
            return labels, pos + 1
        size += length + 1
        if length > 63 or size > 255:
            return None
        label = data[pos + 1 : pos + 1 + length]
        if len(label) != length:
            return None
        labels.append(label)
        pos += length + 1


_WIRE_NAMES = st.lists(
    st.one_of(st.integers(0, 70).map(lambda n: bytes([n]) + b"a" * n), st.binary(max_size=3)), max_size=8
).map(b"".join)


@given(_WIRE_NAMES)
def test_read_name_is_the_checked_reading(data: bytes) -> None:
    from kdns.codec import _FormErr, _read_name

    want = _reference_read_name(data, 0)
    try:
        got: tuple[list[bytes], int] | None = _read_name(data, 0)
    except _FormErr:
        got = None
    assert got == want


@given(st.lists(st.binary(min_size=1, max_size=6), max_size=5))
def test_name_text_escapes_as_label_by_label(labels: list[bytes]) -> None:
    """One search over the joined name decides as each label's search would."""
    import re

    from kdns.codec import _name_text

    unsafe = re.compile(rb"[^\x21-\x2d\x2f-\x5b\x5d-\x7e]")
    parts = [unsafe.sub(lambda m: b"\\%03d" % m[0][0], label).decode("ascii") for label in labels]
    assert _name_text(labels) == (".".join(parts) + "." if labels else ".")


@given(_SPELLINGS)
def test_first_name_is_put_name_on_an_empty_message(spellings: list[tuple[bytes, ...]]) -> None:
    """The question's writer leaves the bytes and the names filed as `_put_name` would."""
    from kdns.codec import _put_first_name, _put_name

    first, plain = bytearray(12), bytearray(12)
    first_names: dict[tuple[bytes, ...], int] = {}
    plain_names: dict[tuple[bytes, ...], int] = {}
    _put_first_name(first, first_names, spellings[0])
    _put_name(plain, plain_names, spellings[0])
    assert first == plain
    for labels in spellings[1:]:
        _put_name(first, first_names, labels)
        _reference_put_name(plain, plain_names, labels)
        assert first == plain


def _requests() -> st.SearchStrategy[bytes]:
    """Requests near the plain shape: dnspython's, with and without EDNS, options, odd
    flags, other classes and types, then some with a byte changed or cut off."""
    made = st.builds(
        _made,
        st.sampled_from(["web.default.svc.cluster.local.", "A.b.", ".", "x\\.y.z.", "\\200.q."]),
        st.sampled_from(["A", "AAAA", "SRV", "PTR", "AXFR", "IXFR", "ANY"]),
        st.sampled_from(["IN", "CH", "ANY"]),
        st.sampled_from([-1, 0, 1]),
        st.booleans(),
        st.sampled_from([0, 511, 512, 1232, 4096]),
        st.booleans(),
        st.one_of(st.sampled_from([0x0100, 0x0000, 0x0110, 0x0500]), st.integers(0, 0xFFFF)),
    )

    def mutate(data: bytes, where: int, byte: int, cut: int) -> bytes:
        changed = data[:where] + bytes([byte]) + data[where + 1 :] if where < len(data) else data
        return changed[: len(changed) - cut]

    return st.one_of(made, st.builds(mutate, made, st.integers(0, 60), st.integers(0, 255), st.integers(0, 3)))


def _made(name: str, rdtype: str, rdclass: str, edns: int, do: bool, payload: int, nsid: bool, flags: int) -> bytes:
    options = [dns.edns.GenericOption(dns.edns.NSID, b"")] if nsid and edns >= 0 else []
    message = dns.message.make_query(
        name, rdtype, rdclass, use_edns=edns, want_dnssec=do and edns >= 0, payload=payload or 512, options=options
    )
    message.flags = flags & ~0x0F & 0xFFFF  # (the rcode bits are the OPT's business)
    return message.to_wire()


@given(_requests())
def test_plain_requests_read_as_the_full_reading(data: bytes) -> None:
    """The plain request's reading gives what reading every section gives; it leaves
    every other request to that."""
    from kdns.codec import _plain_query, _read_request

    plain = _plain_query(data, "10.0.0.1", "udp")
    if plain is not None:
        assert plain == _read_request(data, "10.0.0.1", "udp")
