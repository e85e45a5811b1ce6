"""Static zones from zone files: answers as a table, load errors, reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE

from kdns.authority.static import StaticZones, ZoneError
from kdns.zonefiles import load_zones, reload
from tests.pipeline.helpers import query, texts

EXAMPLE = """\
$TTL 300
@        IN SOA  ns1 hostmaster 42 3600 600 86400 60
@        IN NS   ns1
@        IN MX   10 mail
ns1      IN A    192.0.2.53
mail     IN A    192.0.2.25
www      IN A    192.0.2.1
www      IN AAAA 2001:db8::1
alias    IN CNAME www
chain    IN CNAME alias
gone     IN CNAME nowhere
far      IN CNAME www.elsewhere.test.
_http._tcp IN SRV 0 5 80 www
txt      IN TXT  "v=spf1 -all"
*.wild   IN TXT  "wild"
*.wild   IN A    192.0.2.99
a.b.c    IN A    192.0.2.9
sub      IN NS   ns.sub
ns.sub   IN A    192.0.2.54
sub      IN DS   12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE4F3B5F4AF7A8E6C1D1E5E6F1
loop1    IN CNAME loop2
loop2    IN CNAME loop1
"""
# The SOA in negative answers: TTL min(300, MINIMUM 60), RFC 2308 section 3.
SOA = "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 42 3600 600 86400 60"
OTHER = """\
$ORIGIN other.test.
$TTL 60
@   SOA ns1 hostmaster 1 3600 600 86400 60
@   NS  ns1
ns1 A   192.0.2.153
"""


@pytest.fixture
def zones(tmp_path: Path) -> StaticZones:
    (tmp_path / "example.test.zone").write_text(EXAMPLE)
    (tmp_path / "anything.zone").write_text(OTHER)  # the origin comes from $ORIGIN
    (tmp_path / "README.txt").write_text("not a zone")
    return load_zones(tmp_path)


# (qname, qtype) -> rcode, AA, answer, authority, additional, all as zone text.
# fmt: off
TABLE = [
    ("www.example.test.", "A", RCODE.NOERROR, True, ["www.example.test. 300 IN A 192.0.2.1"], [], []),
    ("www.example.test.", "AAAA", RCODE.NOERROR, True, ["www.example.test. 300 IN AAAA 2001:db8::1"], [], []),
    ("www.example.test.", "MX", RCODE.NOERROR, True, [], [SOA], []),
    ("nope.example.test.", "A", RCODE.NXDOMAIN, True, [], [SOA], []),
    ("example.test.", "SOA", RCODE.NOERROR, True,
     ["example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. 42 3600 600 86400 60"], [], []),
    ("example.test.", "NS", RCODE.NOERROR, True, ["example.test. 300 IN NS ns1.example.test."], [],
     ["ns1.example.test. 300 IN A 192.0.2.53"]),
    ("example.test.", "MX", RCODE.NOERROR, True, ["example.test. 300 IN MX 10 mail.example.test."], [],
     ["mail.example.test. 300 IN A 192.0.2.25"]),
    ("_http._tcp.example.test.", "SRV", RCODE.NOERROR, True,
     ["_http._tcp.example.test. 300 IN SRV 0 5 80 www.example.test."], [],
     ["www.example.test. 300 IN A 192.0.2.1", "www.example.test. 300 IN AAAA 2001:db8::1"]),
    ("txt.example.test.", "TXT", RCODE.NOERROR, True, ['txt.example.test. 300 IN TXT "v=spf1 -all"'], [], []),
    # CNAMEs are followed inside the zone; the rcode is the last name's (RFC 6604).
    ("alias.example.test.", "A", RCODE.NOERROR, True,
     ["alias.example.test. 300 IN CNAME www.example.test.", "www.example.test. 300 IN A 192.0.2.1"], [], []),
    ("chain.example.test.", "A", RCODE.NOERROR, True,
     ["chain.example.test. 300 IN CNAME alias.example.test.", "alias.example.test. 300 IN CNAME www.example.test.",
      "www.example.test. 300 IN A 192.0.2.1"], [], []),
    ("alias.example.test.", "CNAME", RCODE.NOERROR, True, ["alias.example.test. 300 IN CNAME www.example.test."], [], []),
    ("gone.example.test.", "A", RCODE.NXDOMAIN, True, ["gone.example.test. 300 IN CNAME nowhere.example.test."], [SOA], []),
    ("far.example.test.", "A", RCODE.NOERROR, True, ["far.example.test. 300 IN CNAME www.elsewhere.test."], [], []),
    ("loop1.example.test.", "A", RCODE.NOERROR, True,
     ["loop1.example.test. 300 IN CNAME loop2.example.test.", "loop2.example.test. 300 IN CNAME loop1.example.test."],
     [], []),
    # Wildcards (RFC 4592): a name that does not exist below wild. is synthesized.
    ("x.wild.example.test.", "TXT", RCODE.NOERROR, True, ['x.wild.example.test. 300 IN TXT "wild"'], [], []),
    ("x.y.wild.example.test.", "A", RCODE.NOERROR, True, ["x.y.wild.example.test. 300 IN A 192.0.2.99"], [], []),
    ("x.wild.example.test.", "MX", RCODE.NOERROR, True, [], [SOA], []),
    ("wild.example.test.", "TXT", RCODE.NOERROR, True, [], [SOA], []),  # an empty non-terminal
    # Empty non-terminals are NODATA, not NXDOMAIN (RFC 8020).
    ("b.c.example.test.", "A", RCODE.NOERROR, True, [], [SOA], []),
    ("c.example.test.", "A", RCODE.NOERROR, True, [], [SOA], []),
    ("x.b.c.example.test.", "A", RCODE.NXDOMAIN, True, [], [SOA], []),
    # Below a delegation: a referral with glue, not authoritative; DS is the parent's.
    ("www.sub.example.test.", "A", RCODE.NOERROR, False, [], ["sub.example.test. 300 IN NS ns.sub.example.test."],
     ["ns.sub.example.test. 300 IN A 192.0.2.54"]),
    ("sub.example.test.", "NS", RCODE.NOERROR, False, [], ["sub.example.test. 300 IN NS ns.sub.example.test."],
     ["ns.sub.example.test. 300 IN A 192.0.2.54"]),
    ("sub.example.test.", "DS", RCODE.NOERROR, True,
     ["sub.example.test. 300 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE4F3B5F4AF7A8E6C1D1E5E6F1"], [], []),
    # A second zone, its origin from $ORIGIN.
    ("ns1.other.test.", "A", RCODE.NOERROR, True, ["ns1.other.test. 60 IN A 192.0.2.153"], [], []),
]
# fmt: on


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "aa", "answer", "authority", "additional"), TABLE
)
def test_static_answers(
    zones: StaticZones,
    qname: str,
    qtype: str,
    rcode: int,
    aa: bool,
    answer: list[str],
    authority: list[str],
    additional: list[str],
) -> None:
    """Each (qname, qtype) gets the rcode, AA flag and sections RFC 1034 section 4.3.2 prescribes."""
    got = zones.answer(query(qname, qtype))
    assert got is not None
    assert (RCODE.get(got.rcode), got.authoritative) == (RCODE.get(rcode), aa)
    assert texts(got.answer) == answer
    assert texts(got.authority) == authority
    assert texts(got.additional) == additional


def test_names_outside_every_static_zone_are_not_answered(zones: StaticZones) -> None:
    """A name in no static zone gives None, so the router forwards it."""
    assert zones.answer(query("www.elsewhere.test.")) is None
    assert zones.answer(query("test.")) is None
    assert zones.answer(query("www.example.test.", qclass=3)) is None
    assert zones.origins == ("example.test.", "other.test.")


def test_the_asker_spelling_is_echoed(zones: StaticZones) -> None:
    """Records at the asked name are owned by the name as the asker spelled it (RFC 4343)."""
    got = zones.answer(query("WWW.Example.TEST.", "A"))
    assert texts(got.answer) == ["WWW.Example.TEST. 300 IN A 192.0.2.1"]


def test_any_returns_every_set_at_the_name(zones: StaticZones) -> None:
    """ANY at www gives its A and AAAA sets."""
    got = zones.answer(query("www.example.test.", "ANY"))
    assert sorted(QTYPE.get(rr.rtype) for rr in got.answer) == ["A", "AAAA"]


def test_the_closest_enclosing_zone_answers(tmp_path: Path) -> None:
    """A static zone below another (sub.example.test inside example.test) answers its own names."""
    (tmp_path / "example.test.zone").write_text(EXAMPLE)
    (tmp_path / "sub.example.test.zone").write_text(
        "$TTL 30\n@ SOA ns hostmaster 1 3600 600 86400 30\n@ NS ns\nns A 192.0.2.54\nwww A 192.0.2.77\n"
    )
    got = load_zones(tmp_path).answer(query("www.sub.example.test."))
    assert (got.authoritative, texts(got.answer)) == (
        True,
        ["www.sub.example.test. 30 IN A 192.0.2.77"],
    )


def test_a_broken_zone_file_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    """A bad record is reported as FILE:LINE: what is wrong."""
    path = tmp_path / "example.test.zone"
    path.write_text(EXAMPLE.replace("www      IN A    192.0.2.1", "www      IN A    192.0.2.999"))
    with pytest.raises(ZoneError) as caught:
        load_zones(tmp_path)
    assert (caught.value.path, caught.value.line) == (path, 7)
    assert str(caught.value).startswith(f"{path}:7: ")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("$TTL 300\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nwww BOGUS 1\n", 5, "BOGUS"),
        ("$TTL 300\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nwww CNAME x\nwww A 192.0.2.1\n\n", 5, "CNAME"),
        ("$TTL 300\n$INCLUDE /etc/hosts\n@ SOA ns h 1 2 3 4 5\n", 2, "$INCLUDE"),
        ("$ORIGIN example.test\n$TTL 300\n@ SOA ns h 1 2 3 4 5\n", 1, "$ORIGIN must be absolute"),
        ("$TTL 300\n@ NS ns\nns A 192.0.2.1\n", None, "SOA"),
        ("$TTL 300\n@ SOA ns h 1 2 3 4 5\n", None, "NS"),
    ],
)
def test_zone_errors_say_where_and_what(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    """Unknown types, CNAME beside data, $INCLUDE, a relative $ORIGIN, no SOA or NS: ZoneErrors naming the file."""
    path = tmp_path / "example.test.zone"
    path.write_text(text)
    with pytest.raises(ZoneError, match=f"^{path}") as caught:
        load_zones(tmp_path)
    assert caught.value.line == line
    assert words in str(caught.value)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    """load_zones on a path that is not a directory raises ZoneError naming it."""
    with pytest.raises(ZoneError, match="not a directory"):
        load_zones(tmp_path / "missing")


def test_reload_keeps_the_old_version_of_a_broken_file(tmp_path: Path) -> None:
    """On reload a broken file keeps serving its old zone, a changed good file is replaced, a removed one dropped."""
    example, other = tmp_path / "example.test.zone", tmp_path / "other.zone"
    example.write_text(EXAMPLE)
    other.write_text(OTHER)
    old = load_zones(tmp_path)

    example.write_text(EXAMPLE + "broken IN A not-an-address\n")
    (tmp_path / "new.test.zone").write_text(
        OTHER.replace("$ORIGIN other.test.\n", "").replace("153", "200")
    )
    other.unlink()
    new, errors = reload(tmp_path, old)

    assert [(e.path, e.line) for e in errors] == [(example, EXAMPLE.count("\n") + 1)]
    assert new.origins == ("example.test.", "new.test.")
    assert texts(new.answer(query("www.example.test.")).answer) == [
        "www.example.test. 300 IN A 192.0.2.1"
    ]
    assert texts(new.answer(query("ns1.new.test.")).answer) == ["ns1.new.test. 60 IN A 192.0.2.200"]
    assert new.answer(query("ns1.other.test.")) is None


def test_reload_does_not_serve_a_new_broken_file(tmp_path: Path) -> None:
    """A file that never loaded is not served, and its error is returned."""
    (tmp_path / "example.test.zone").write_text("garbage\n")
    zones, errors = reload(tmp_path, StaticZones())
    assert len(zones) == 0
    assert [e.path.name for e in errors] == ["example.test.zone"]


def test_two_files_for_one_zone_are_an_error(tmp_path: Path) -> None:
    """The same origin in two files is refused with both file names."""
    (tmp_path / "a.zone").write_text(OTHER)
    (tmp_path / "b.zone").write_text(OTHER)
    with pytest.raises(ZoneError, match=r"also in .*a\.zone"):
        load_zones(tmp_path)
