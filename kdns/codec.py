"""kdns's one converter between DNS messages as bytes and its model (kdns.message); pure, no I/O.

Both sides of kdns go through here: the servers (kdns.wire) read clients' requests with
`from_wire` and write the replies with `to_wire`; the forwarder (kdns.pipeline.forward)
writes its requests to upstreams with `request`, checks what comes back with
`is_reply_to` and `truncated`, and reads the reply into an `Answer`, once, with
`read_reply`. Nothing else in kdns reads or writes DNS messages, and nothing else
touches dnslib's wire code: records are packed here, by kdns's own writer (`_put_record`),
which asks dnslib only for the RDATA of types it does not write itself.

`from_wire` reads the header, the question and the OPT record directly (dnslib's parser
builds objects for every section and is several times slower) and either returns a
`Query` for the handler, or a `Rejected` carrying a ready reply for the few requests the
codec answers itself, or None for packets that get no reply at all (RFC 1035 §4.1.1; the
edges of RFC 6891). `to_wire` writes the header, the question exactly as it was asked and
the OPT record itself (with the Extended DNS Errors of the answer, RFC 8914, and the
server's NSID when asked, RFC 5001), and the records of the `Answer`.

Every flag of a reply is set here on purpose; nothing is copied from the query except
ID, opcode and RD (RFC 1035 §4.1.1), CD in replies to QUERY (RFC 4035 §3.2.2; it means
nothing for other opcodes) and DO (RFC 3225 §3). Every reply to a request with a
well-formed OPT record has an OPT record, errors included (RFC 6891 §7).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from operator import attrgetter
from typing import NoReturn

from dnslib import DNSBuffer, DNSError, DNSRecord

from kdns.message import (
    BADVERS,
    CLASS_ANY,
    CLASS_IN,
    EDNS_PAYLOAD,
    FORMERR,
    NOTIMP,
    OPTION_EDE,
    OPTION_NSID,
    QTYPE,
    REFUSED,
    RR,
    SERVFAIL,
    Answer,
    EdeCode,
    ExtendedError,
    Query,
)

__all__ = [
    "EDNS_PAYLOAD",
    "MAX_TCP_MESSAGE",
    "Malformed",
    "Rejected",
    "from_wire",
    "is_reply_to",
    "question_text",
    "read_reply",
    "request",
    "request_edns",
    "servfail",
    "soa_serial_at",
    "to_wire",
    "truncated",
]

# RFC 1035 §4.2.1: without EDNS a UDP reply is at most 512 bytes; RFC 6891 §6.2.5: an
# advertised size below 512 is treated as 512.
MIN_PAYLOAD = 512
# RFC 1035 §4.2.2: a TCP message is framed by a 16-bit length.
MAX_TCP_MESSAGE = 65535

_QR = 0x8000
_AA = 0x0400
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080
_CD = 0x0010
_OPCODE_MASK = 0x7800  # opcode in bits 11-14; QUERY is 0
_DO = 0x8000  # in the OPT record's TTL field

# Type numbers, read once from kdns.message's table (a dnslib Bimap looks names up on
# every attribute access).
_TYPE_SRV = QTYPE.SRV
_TYPE_SOA = QTYPE.SOA
_TYPE_MX = QTYPE.MX
_TYPE_OPT = QTYPE.OPT
_TYPE_IXFR = QTYPE.IXFR
_TYPE_AXFR = QTYPE.AXFR
_ADDRESS = frozenset({QTYPE.A, QTYPE.AAAA})  # RDATA: the address's bytes
_ONE_NAME = frozenset({QTYPE.CNAME, QTYPE.NS, QTYPE.PTR})  # RDATA: one compressible name

_HEADER = struct.Struct("!6H")
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0
_ROOT_OPT = b"\x00\x00\x29"  # an OPT record's root owner and type (41)
_QTAIL = struct.Struct("!HH")
_RR_TAIL = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_OPT = struct.Struct("!BHHIH")  # an OPT record: root name, type, payload size, ttl, rdlength
_OPTION = struct.Struct("!HH")  # option code, option length (RFC 6891 §6.1.2)
_RDLENGTH = struct.Struct("!H")
_SRV_FIELDS = struct.Struct("!HHH")  # priority, weight, port
_SOA_TIMES = struct.Struct("!IIIII")  # serial, refresh, retry, expire, minimum
_PREFERENCE = struct.Struct("!H")  # MX

# A record's fields, and an SRV's, read where dnslib's properties keep them: its getters
# are Python functions that format the attribute's name on every read.
# (tests/test_codec.py holds these names to dnslib's.)
_RECORD_FIELDS = attrgetter("_rname", "_rtype", "_rclass", "_ttl", "rdata")
_SRV_RDATA = attrgetter("_priority", "_weight", "_port", "_target")

# Bytes a label may hold and still be written as plain text; everything else (dots,
# backslashes, spaces, control and non-ASCII bytes) is escaped as \DDD (RFC 4343 §2.1,
# the presentation format of RFC 1035 §5.1), so a name survives the round trip exactly.
_UNSAFE = re.compile(rb"[^\x21-\x2d\x2f-\x5b\x5d-\x7e]")
_UNSAFE_BUT_DOTS = re.compile(rb"[^\x21-\x5b\x5d-\x7e]")  # the same, dots allowed
_ESCAPE = re.compile(r"\\(\d{3}|.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request the codec answers itself; `reply` is the whole packet to send back."""

    rcode: int
    reply: bytes


class _FormErr(Exception):
    """The message is malformed (RFC 1035 §4.1.1 FORMERR)."""


# --- reading --------------------------------------------------------------------------


def _read_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the uncompressed name at `pos`, and the offset after it.

    A question is the first thing after the header, so a compression pointer in it
    could only point into the header: it is malformed.
    """
    labels: list[bytes] = []
    start = pos
    try:
        # A label cut short by the end of `data` moves `pos` past it: the next read fails.
        while length := data[pos]:
            if length > 63:
                raise _FormErr
            labels.append(data[pos + 1 : pos + 1 + length])
            pos += length + 1
    except IndexError:
        raise _FormErr from None
    if pos - start >= 255:  # RFC 1035 §3.1: 255 bytes with the root label
        raise _FormErr
    return labels, pos + 1


def _skip_name(data: bytes, pos: int) -> tuple[bool, int]:
    """Skip a possibly compressed name; (is it the root name, offset after it)."""
    end = len(data)
    first = True
    while True:
        if pos >= end:
            raise _FormErr
        length = data[pos]
        if length == 0:
            return first, pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise _FormErr
            return False, pos + 2
        if length > 63:
            raise _FormErr
        pos += length + 1
        first = False


def _name_text(labels: list[bytes]) -> str:
    """Wire labels -> absolute presentation text, case kept, odd bytes escaped."""
    if not labels:
        return "."
    text = b".".join(labels)
    # (Most names: no byte to escape, so no label holds a dot: one search for them all.)
    if _UNSAFE_BUT_DOTS.search(text) is None and text.count(b".") == len(labels) - 1:
        return text.decode("ascii") + "."
    parts = []
    for label in labels:
        escaped = _UNSAFE.sub(lambda m: b"\\%03d" % m[0][0], label) if _UNSAFE.search(label) else label
        parts.append(escaped.decode("ascii"))
    parts.append("")
    return ".".join(parts)


def _name_labels(text: str) -> tuple[bytes, ...]:
    """The inverse of `_name_text`: presentation text -> wire labels."""
    if text == ".":
        return ()
    if "\\" not in text:
        return tuple(text[:-1].encode("ascii").split(b"."))
    labels = []
    current = bytearray()
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            escape = _ESCAPE.match(text, i)
            if escape is None:  # a trailing backslash: keep it literally
                current += b"\\"
                i += 1
                continue
            body = escape[1]
            current += bytes([int(body)]) if len(body) == 3 else body.encode("latin-1")
            i = escape.end()
        elif char == ".":
            labels.append(bytes(current))
            current = bytearray()
            i += 1
        else:
            current += char.encode("latin-1")
            i += 1
    if current:
        labels.append(bytes(current))
    return tuple(labels)


def from_wire(data: bytes, client: str | None = None, transport: str = "udp") -> Query | Rejected | None:
    """Read one request: a `Query` to answer, a `Rejected` reply to send as is, or None to drop.

    None: shorter than a header, or a response (QR set), which must never be answered
    (answering responses is how reflection loops start). FORMERR: malformed, no question
    or several, several OPT records or an OPT outside the additional section (RFC 6891
    §6.1.1), an OPT whose options do not add up to its RDLENGTH (§6.1.2). NOTIMP: an
    opcode other than QUERY. BADVERS: EDNS version above 0 (RFC 6891 §6.1.3). REFUSED: a
    class other than IN or ANY (kdns serves no CHAOS or HESIOD data; QCLASS ANY is
    answered from IN, as Knot does), and AXFR/IXFR (kdns does not transfer zones, as
    CoreDNS's kubernetes plugin without `transfer`).

    An error reply has an OPT record when the request had exactly one well-formed OPT
    record (RFC 6891 §7); one whose OPT is itself malformed has none (as Knot).
    """
    query = _plain_query(data, client, transport)
    if query is not None:
        return query
    return _read_request(data, client, transport)


def _read_request(data: bytes, client: str | None, transport: str) -> Query | Rejected | None:
    """`from_wire` for any request: every section read and checked."""
    if len(data) < 12:
        return None
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR:
        return None

    question: bytes | None = None  # the question's wire form, echoed in error replies
    labels: list[bytes] = []
    qtype = qclass = 0
    opt_ttl: int | None = None
    opt_payload = 0
    opt_count = 0
    opt_rdata = (0, 0)  # where the OPT record's options are: start, end
    opt_broken = False  # an OPT record in the wrong place, or its options do not add up
    try:
        pos = 12
        for number in range(qdcount):
            start = pos
            name_labels, pos = _read_name(data, pos)
            if pos + 4 > len(data):
                raise _FormErr
            if number == 0:
                labels = name_labels
                qtype, qclass = _QTAIL.unpack_from(data, pos)
                question = data[start : pos + 4]
            pos += 4
        for section, count in ((1, ancount), (2, nscount), (3, arcount)):
            for _ in range(count):
                is_root, pos = _skip_name(data, pos)
                if pos + 10 > len(data):
                    raise _FormErr
                rtype, rclass, ttl, rdlength = _RR_TAIL.unpack_from(data, pos)
                pos += 10 + rdlength
                if pos > len(data):
                    raise _FormErr
                if rtype == _TYPE_OPT:
                    opt_count += 1
                    if section != 3 or not is_root:
                        opt_broken = True
                        raise _FormErr
                    opt_payload, opt_ttl = rclass, ttl
                    opt_rdata = (pos - rdlength, pos)
        if pos != len(data):
            raise _FormErr  # trailing bytes: this is not the message the header describes
        nsid = _read_options(data, *opt_rdata) if opt_count == 1 and opt_rdata[0] != opt_rdata[1] else False
    except _FormErr:
        opt_broken = opt_broken or opt_count > 1
        return _reject(ident, flags, FORMERR, question if qdcount == 1 else None, _echo(opt_ttl, opt_broken))
    except _BadOption:
        return _reject(ident, flags, FORMERR, question if qdcount == 1 else None, None)

    if flags & _OPCODE_MASK:
        return _reject(ident, flags, NOTIMP, question if qdcount == 1 else None, _echo(opt_ttl, opt_count > 1))
    if qdcount != 1 or opt_count > 1:
        return _reject(ident, flags, FORMERR, question if qdcount == 1 else None, _echo(opt_ttl, opt_count > 1))
    do = opt_ttl is not None and opt_ttl & _DO != 0
    if opt_ttl is not None and (opt_ttl >> 16) & 0xFF:
        return _reject(ident, flags, BADVERS, question, do)
    if qclass not in (CLASS_IN, CLASS_ANY) or qtype in (_TYPE_AXFR, _TYPE_IXFR):
        return _reject(ident, flags, REFUSED, question, _echo(opt_ttl, False))

    payload = MIN_PAYLOAD if opt_ttl is None else _udp_payload(opt_payload)
    return Query(
        id=ident,
        qname=_name_text(labels),
        qtype=qtype,
        qclass=qclass,
        rd=flags & _RD != 0,
        cd=flags & _CD != 0,
        edns=opt_ttl is not None,
        payload=payload,
        do=do,
        client=client,
        transport=transport,
        nsid=nsid,
    )


def _udp_payload(advertised: int) -> int:
    """The UDP reply size a request's OPT allows: its payload size, within
    MIN_PAYLOAD..EDNS_PAYLOAD."""
    return max(MIN_PAYLOAD, min(advertised, EDNS_PAYLOAD))


def _plain_query(data: bytes, client: str | None, transport: str) -> Query | None:
    """`from_wire`'s Query for the request almost every stub and resolver sends: QUERY,
    one question of class IN or ANY, nothing else but an OPT record (version 0, no
    options) at its end; None for anything else, which `from_wire` reads in full
    (tests/test_codec.py holds the two readings equal)."""
    # QR and opcode clear; one question, no answer or authority records.
    if data[4:10] != _ONE_QUESTION or data[2] & 0xF8:
        return None
    try:
        labels, pos = _read_name(data, 12)
    except _FormErr:
        return None
    end = pos + 4
    size = len(data)
    tail = data[10:12]
    if tail == b"\x00\x00" and size == end:
        edns = False
        payload = MIN_PAYLOAD
        do = False
    elif tail == b"\x00\x01" and size == end + 11 and data[end : end + 3] == _ROOT_OPT and data[end + 5] == 0:
        # root owner, type OPT; then payload size, extended rcode, version (0), flags, RDLENGTH (0)
        if data[end + 6] or data[end + 9 : end + 11] != b"\x00\x00":
            return None
        edns = True
        payload = _udp_payload(int.from_bytes(data[end + 3 : end + 5], "big"))
        do = data[end + 7] & 0x80 != 0
    else:
        return None
    qtype, qclass = _QTAIL.unpack_from(data, pos)
    if qclass not in (CLASS_IN, CLASS_ANY) or qtype in (_TYPE_AXFR, _TYPE_IXFR):
        return None
    flags = data[3]
    return Query(
        id=int.from_bytes(data[:2], "big"),
        qname=_name_text(labels),
        qtype=qtype,
        qclass=qclass,
        rd=data[2] & 0x01 != 0,
        cd=flags & 0x10 != 0,
        edns=edns,
        payload=payload,
        do=do,
        client=client,
        transport=transport,
        nsid=False,
    )


class _BadOption(Exception):
    """The OPT record's options do not add up to its RDLENGTH (FORMERR, no OPT echoed)."""


def _read_options(data: bytes, start: int, end: int) -> bool:
    """Check the OPT record's options (code, length, data; RFC 6891 §6.1.2) between
    `start` and `end`; whether an NSID option asks for the server's NSID (RFC 5001)."""
    nsid = False
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise _BadOption
        code, length = _OPTION.unpack_from(data, pos)
        pos += 4 + length
        if pos > end:
            raise _BadOption
        if code == OPTION_NSID:
            nsid = True
    return nsid


def _echo(opt_ttl: int | None, broken: bool) -> bool | None:
    """The DO bit an error reply echoes in its OPT record; None: the reply has no OPT."""
    if opt_ttl is None or broken:
        return None
    return bool(opt_ttl & _DO)


# --- writing --------------------------------------------------------------------------


def _opt(rcode: int, do: bool, options: bytes = b"") -> bytes:
    """Our OPT record: payload size 1232, version 0, the upper rcode bits, DO echoed."""
    ttl = ((rcode >> 4) & 0xFF) << 24 | (_DO if do else 0)
    return _OPT.pack(0, _TYPE_OPT, EDNS_PAYLOAD, ttl, len(options)) + options


# Most replies' OPT record: no options, no upper rcode bits; by DO.
_PLAIN_OPT = {False: _opt(0, False), True: _opt(0, True)}


def _options(errors: tuple[ExtendedError, ...], nsid: bytes) -> bytes:
    """The options of a reply's OPT record: each EDE (RFC 8914 §2), then the NSID."""
    out = b""
    for error in errors:
        text = error.text.encode("utf-8")
        out += _OPTION.pack(OPTION_EDE, 2 + len(text)) + int(error.code).to_bytes(2, "big") + text
    if nsid:
        out += _OPTION.pack(OPTION_NSID, len(nsid)) + nsid
    return out


def _reject(ident: int, query_flags: int, rcode: int, question: bytes | None, do: bool | None) -> Rejected:
    """An error reply: ID, opcode and RD echoed (CD too for a QUERY); the question if it
    could be read.

    `do` is None when the request had no usable OPT record; otherwise the reply has one
    (RFC 6891 §7). BADVERS always has one: its rcode does not fit in the header.
    """
    echoed = _OPCODE_MASK | _RD if query_flags & _OPCODE_MASK else _OPCODE_MASK | _RD | _CD
    flags = _QR | (query_flags & echoed) | (rcode & 0xF)
    has_opt = do is not None or rcode > 15
    header = _HEADER.pack(ident, flags, 1 if question else 0, 0, 0, 1 if has_opt else 0)
    reply = header + (question or b"") + (_opt(rcode, bool(do)) if has_opt else b"")
    return Rejected(rcode, reply)


def _put_name(out: bytearray, names: dict[tuple[bytes, ...], int], labels: tuple[bytes, ...]) -> None:
    """Append a name to `out`, compressed: a pointer to the longest suffix already written.

    Names are matched case-insensitively, as RFC 4343 §4.1 says compression compares them
    (accepting that a compressed name reads in its target's case; dnspython does the
    same). The question is written first, so every name that ends like it, owner names
    equal to it above all, is a pointer into it and reads as the asker spelt it; and
    where the pointers go does not depend on that spelling, which is what lets
    kdns.wire.fastpath re-spell a ready reply by rewriting the question's bytes alone.
    Only offsets a pointer can hold (14 bits, RFC 1035 §4.1.4) are offered to later
    names: past 16 KiB (large TCP replies) a name is written out in full.

    `names` holds each suffix written in lower case, and each whole name written also
    as it was spelt, at the same offset: a name written again as it was (most owners
    are the question, spelt as asked) is found at once, without being lowered label by
    label; a name equal to a key, either kind, is that name, so the pointer is the one
    the lower-case search finds.
    """
    pointer = names.get(labels)
    if pointer is None:
        if b"" in labels or max(map(len, labels), default=0) > 63:
            _bad_label(labels)
        folded = tuple([label.lower() for label in labels])  # bytes.lower: ASCII A-Z only
        for i, label in enumerate(labels):
            suffix = folded[i:]
            pointer = names.get(suffix)
            if pointer is not None:
                break
            offset = len(out)
            if offset < 0x4000:
                names[suffix] = offset
            out.append(len(label))
            out += label
        else:
            out.append(0)
        whole = names.get(folded)
        if whole is not None:
            names[labels] = whole
        if pointer is None:
            return
    out += (0xC000 | pointer).to_bytes(2, "big")


def _put_first_name(out: bytearray, names: dict[tuple[bytes, ...], int], labels: tuple[bytes, ...]) -> None:
    """`_put_name` for a message's first name, the question's, at offset 12: there is
    nothing to point to yet, so each suffix is filed as the name is written out."""
    if not labels:
        out.append(0)
        return
    if b"" in labels or max(map(len, labels)) > 63:
        _bad_label(labels)
    names[labels] = offset = len(out)
    folded = tuple([label.lower() for label in labels])  # bytes.lower: ASCII A-Z only
    for i, label in enumerate(labels):
        names[folded[i:]] = offset
        length = len(label)
        offset += length + 1
        out.append(length)
        out += label
    out.append(0)


def _bad_label(labels: tuple[bytes, ...]) -> NoReturn:
    """Refuse a name with an empty label or one longer than 63 bytes (RFC 1035 §2.3.4)."""
    label = next(label for label in labels if not 0 < len(label) <= 63)
    raise ValueError(f"label {label!r}: must be 1-63 bytes")


def _put_name_plain(out: bytearray, labels: tuple[bytes, ...]) -> None:
    """Append a name uncompressed: an SRV target (RFC 2782: "name compression is not to
    be used for this field")."""
    if b"" in labels or max(map(len, labels), default=0) > 63:
        _bad_label(labels)
    for label in labels:
        out.append(len(label))
        out += label
    out.append(0)


def _put_record(out: bytearray, names: dict[tuple[bytes, ...], int], record: RR) -> None:
    """Append one resource record (RFC 1035 §4.1.3).

    The types whose RDATA is, or ends in, names that RFC 1035 lets be compressed (RFC 3597
    §4: NS, CNAME, PTR, SOA, MX) are written here, with compression; A, AAAA and SRV,
    which most answers hold, are written from their fields too. Every other type's RDATA
    is packed by dnslib's own `pack` on a buffer of its own, so none of its names is
    compressed (RFC 3597 §4: a type defined later must not be).
    """
    owner, rtype, rclass, ttl, rdata = _RECORD_FIELDS(record)
    _put_name(out, names, owner.label)
    at = len(out) + 8  # where RDLENGTH goes
    out += _RR_TAIL.pack(rtype, rclass, ttl, 0)
    start = len(out)
    if rtype in _ADDRESS:
        out += bytes(rdata._data)
    elif rtype in _ONE_NAME:
        _put_name(out, names, rdata.label.label)
    elif rtype == _TYPE_SRV:
        priority, weight, port, target = _SRV_RDATA(rdata)
        out += _SRV_FIELDS.pack(priority, weight, port)
        _put_name_plain(out, target.label)
    elif rtype == _TYPE_SOA:
        _put_name(out, names, rdata.mname.label)
        _put_name(out, names, rdata.rname.label)
        out += _SOA_TIMES.pack(*rdata.times)
    elif rtype == _TYPE_MX:
        out += _PREFERENCE.pack(rdata.preference)
        _put_name(out, names, rdata.label.label)
    else:
        alone = DNSBuffer()
        rdata.pack(alone)
        out += alone.data
    _RDLENGTH.pack_into(out, at, len(out) - start)


def to_wire(query: Query, answer: Answer, limit: int = MAX_TCP_MESSAGE, nsid: bytes = b"") -> bytes:
    """The reply to `query`: at most `limit` bytes (UDP: `query.payload`; TCP: 65535).

    If everything does not fit, the additional section goes first, without TC (RFC 2181
    §9: extra data that does not fit is no reason for TC), except the glue a referral
    requires (`Answer.required_glue`, RFC 9471). If the answer and authority sections
    (and that glue) still do not fit, the reply is the header, question and OPT with TC
    set and nothing else, so the client asks again over TCP rather than use a partial
    RRset; at TCP's limit there is nothing larger to ask over, and the reply is SERVFAIL.
    `nsid` is the server's NSID, sent to an asker that asked for it (RFC 5001).
    """
    rcode = answer.rcode
    flags = _QR | (rcode & 0xF)
    if answer.authoritative:
        flags |= _AA
    if query.rd:
        flags |= _RD
    if answer.recursion_available:
        flags |= _RA
    if query.cd:
        flags |= _CD
    if query.edns:
        if answer.errors or query.nsid:
            opt = _opt(rcode, query.do, _options(answer.errors, nsid if query.nsid else b""))
        elif rcode <= 0xF:
            opt = _PLAIN_OPT[query.do]
        else:
            opt = _opt(rcode, query.do)
    else:
        opt = b""
    arcount_opt = 1 if query.edns else 0

    data = bytearray(12)
    names: dict[tuple[bytes, ...], int] = {}
    _put_first_name(data, names, _name_labels(query.qname))
    data += _QTAIL.pack(query.qtype, query.qclass)
    question_end = len(data)

    for record in answer.answer:
        _put_record(data, names, record)
    for record in answer.authority:
        _put_record(data, names, record)
    glue = answer.required_glue
    for record in answer.additional[:glue]:
        _put_record(data, names, record)
    main_end = len(data)
    for record in answer.additional[glue:]:
        _put_record(data, names, record)

    if len(data) + len(opt) <= limit:
        data[:12] = _HEADER.pack(
            query.id, flags, 1, len(answer.answer), len(answer.authority), len(answer.additional) + arcount_opt
        )
        data += opt
        return bytes(data)
    if main_end + len(opt) <= limit:
        # Compression pointers only point backwards, so cutting the tail is safe.
        del data[main_end:]
        data[:12] = _HEADER.pack(
            query.id, flags, 1, len(answer.answer), len(answer.authority), glue + arcount_opt
        )
        data += opt
        return bytes(data)
    if limit >= MAX_TCP_MESSAGE:
        return servfail(query, nsid, ExtendedError(EdeCode.OTHER, "the answer does not fit in 65535 bytes"))
    del data[question_end:]
    data[:12] = _HEADER.pack(query.id, flags | _TC, 1, 0, 0, arcount_opt)
    data += opt
    return bytes(data)


def servfail(query: Query, nsid: bytes = b"", *errors: ExtendedError) -> bytes:
    """SERVFAIL for `query`: what a failure anywhere behind the codec turns into."""
    return to_wire(query, Answer(rcode=SERVFAIL, errors=errors), query.payload, nsid)


def soa_serial_at(reply: bytes) -> int:
    """The offset of the serial in the SOA that ends the answer and authority sections of
    `reply`, a reply `to_wire` packed (a negative answer's, or the apex SOA's,
    docs/dns-rules.md R19); 0 if they do not end in a SOA (other positive answers, a
    truncated one). The ready-reply cache writes the zone's current serial there when it
    sends the reply again."""
    _, _, qdcount, ancount, nscount, _ = _HEADER.unpack_from(reply)
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(reply, pos)[1] + 4
    rtype = 0
    for _ in range(ancount + nscount):
        pos = _skip_name(reply, pos)[1]
        rtype, _, _, rdlength = _RR_TAIL.unpack_from(reply, pos)
        pos += 10 + rdlength
    # SOA RDATA ends with serial, refresh, retry, expire, minimum: 4 bytes each.
    return pos - 20 if rtype == _TYPE_SOA else 0


# --- the query log's reading of a request and its reply --------------------------------


def question_text(message: bytes) -> tuple[str, int, int] | None:
    """(name lower case, type, class) of a message's first question, for the query log;
    None if unreadable. Lenient where `from_wire` is strict: it reads replies too, and any
    byte in a label (escaped as Python's backslashreplace does)."""
    if len(message) < 12 or message[4:6] == b"\x00\x00":
        return None
    labels: list[str] = []
    pos = 12
    size = len(message)
    while pos < size:
        length = message[pos]
        if length == 0:
            if pos + 5 > size:
                return None
            qtype = int.from_bytes(message[pos + 1 : pos + 3], "big")
            qclass = int.from_bytes(message[pos + 3 : pos + 5], "big")
            name = ".".join(labels) + "." if labels else "."
            return name, qtype, qclass
        if length > 63:
            return None
        labels.append(message[pos + 1 : pos + 1 + length].decode("ascii", "backslashreplace").lower())
        pos += length + 1
    return None


def request_edns(request: bytes) -> tuple[bool, int]:
    """(DO, the EDNS payload size or 512) of a request whose OPT record ends it (the
    additional section's last record, as in every stub's and resolver's query)."""
    # The OPT record: root owner, type 41, size, extended rcode, version, flags, RDLENGTH.
    start = request.rfind(b"\x00\x00\x29", 12)
    while start >= 0:
        fixed_end = start + 11
        if fixed_end <= len(request) and fixed_end + int.from_bytes(request[start + 9 : fixed_end], "big") == len(request):
            return bool(request[start + 7] & 0x80), int.from_bytes(request[start + 3 : start + 5], "big")
        start = request.rfind(b"\x00\x00\x29", 12, start)
    return False, 512


# --- the forwarder's side: requests to upstreams, their replies -----------------------


class Malformed(ValueError):
    """An upstream's reply that cannot be read as a DNS message."""


def request(query: Query, ident: int, payload: int) -> bytes:
    """The request that asks an upstream `query`'s question: ID `ident`, RD set, CD as
    the asker set it, and an OPT record (EDNS version 0) offering `payload` bytes with
    the asker's DO bit (RFC 6891 §6.1, RFC 3225 §3). The name is written as `query.qname`
    spells it."""
    flags = _RD | (_CD if query.cd else 0)
    data = bytearray(_HEADER.pack(ident, flags, 1, 0, 0, 1))
    _put_name_plain(data, _name_labels(query.qname))
    data += _QTAIL.pack(query.qtype, query.qclass)
    data += _OPT.pack(0, _TYPE_OPT, payload, _DO if query.do else 0, 0)
    return bytes(data)


def is_reply_to(sent: bytes, reply: bytes) -> bool:
    """Whether `reply` is the reply to the request `sent`: a response with its ID, opcode
    and question (names compared case-insensitively: RFC 4343, and a server may echo 0x20
    spelling). Anything else may be spoofed or stray (RFC 5452 §9) and is to be ignored."""
    if len(reply) < 12 or reply[:2] != sent[:2] or not reply[2] & 0x80:
        return False
    if (reply[2] ^ sent[2]) & 0x78 or reply[4:6] != sent[4:6]:  # opcode, QDCOUNT
        return False
    end = 12
    while end < len(sent) and sent[end] != 0:
        end += sent[end] + 1
    end += 5  # the root label, type, class
    return reply[12:end].lower() == sent[12:end].lower()


def truncated(reply: bytes) -> bool:
    """Whether `reply` (at least a header long) has TC set: the rest is to be asked for
    over TCP (RFC 7766 §5)."""
    return bool(reply[2] & (_TC >> 8))


def read_reply(reply: bytes) -> Answer:
    """An upstream's reply -> Answer: its rcode and records, its OPT record left out (the
    codec writes kdns's own for the client: the upstream's says nothing about the
    client's connection). Raises Malformed if dnslib cannot read it."""
    try:
        message = DNSRecord.parse(reply)
    except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise Malformed(f"unreadable reply: {exc}") from None
    return Answer(
        rcode=int(message.header.rcode),
        answer=tuple(message.rr),
        authority=tuple(message.auth),
        additional=tuple(rr for rr in message.ar if rr.rtype != _TYPE_OPT),
        authoritative=False,
        recursion_available=True,
        source="upstream",
    )
