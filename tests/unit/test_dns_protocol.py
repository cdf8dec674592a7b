"""The stub resolver's messages: building queries, reading answers, names and their compression,
and arbitrary bytes fed to the answer parser (only Mismatch or NotReady may come out of it)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol import dnswire
from portpatrol.errors import NotReady
from portpatrol.kinds import dns

QUESTION = b"\x02db\x04test\x00"


def answer(ident: int, records: bytes, count: int, flags: int = 0x8180, rtype: int = 1) -> bytes:
    header = struct.pack("!HHHHHH", ident, flags, 1, count, 0, 0)
    return header + QUESTION + struct.pack("!HH", rtype, 1) + records


def record(rtype: int, rdata: bytes, owner: bytes = b"\xc0\x0c") -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata


def test_query_layout() -> None:
    message = dnswire.query("db.test", "MX", 0x1234)
    assert message == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + QUESTION + b"\x00\x0f\x00\x01"


def test_records_of_each_type_in_presentation_form() -> None:
    records = (
        record(1, bytes([127, 0, 0, 1]))
        + record(28, bytes(15) + b"\x01")
        + record(15, b"\x00\x0a\x04mail\xc0\x0f")  # a pointer to "test" inside the question
        + record(16, b"\x03abc\x02de")
        + record(33, struct.pack("!HHH", 1, 2, 5432) + b"\x02db\xc0\x0f")
        + record(99, b"ignored")  # a type we do not read is skipped by its length
    )
    response = dnswire.parse_response(answer(7, records, 6), "DB.test", "A", 7)
    assert [value for _, _, value in response.answers] == [
        "127.0.0.1",
        "::1",
        "10 mail.test",
        "abcde",
        "1 2 5432 db.test",
    ]
    assert {owner for owner, _, _ in response.answers} == {"db.test"}


def test_rcode_and_truncation_are_reported_without_reading_records() -> None:
    assert dnswire.parse_response(answer(1, b"\xff", 5, flags=0x8183), "db.test", "A", 1).rcode == 3
    assert dnswire.parse_response(answer(1, b"", 0, flags=0x8380), "db.test", "A", 1).truncated


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"\x00\x07\x81", "shorter than a DNS header"),
        (answer(8, b"", 0), "another id"),
        (answer(7, b"", 0, flags=0x0100), "not a response"),
        (answer(7, b"", 0, rtype=28), "another question"),
        (answer(7, b"", 0)[:-2], "another question"),
    ],
)
def test_messages_that_are_not_our_answer(message: bytes, why: str) -> None:
    with pytest.raises(dnswire.Mismatch, match=why):
        dnswire.parse_response(message, "db.test", "A", 7)


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (record(1, b"\x7f\x00\x00"), "an A record of 3 bytes"),
        (record(1, b"\x7f\x00\x00\x01")[:-1], "data runs past its end"),
        (b"\xc0\x0c\x00\x01", "a record runs past its end"),
        (record(16, b"\x05ab"), "a TXT string runs past its record"),
        (record(15, b"\x00\x0a\x04mail"), "a name runs past its end"),
        (record(15, b"\x00\x0a\x04mail\x00", owner=b"\xc0\x30"), "does not point backwards"),
        (record(1, b"\x7f\x00\x00\x01", owner=b"\x80"), "unknown label type 2"),
        (record(5, b"\x00"), ""),  # the root as a CNAME target reads fine
    ],
)
def test_malformed_records(records: bytes, why: str) -> None:
    message = answer(7, records, 1)
    if not why:
        assert dnswire.parse_response(message, "db.test", "A", 7).answers == [("db.test", 5, "")]
        return
    with pytest.raises(NotReady, match=why):
        dnswire.parse_response(message, "db.test", "A", 7)


def test_name_compression_loops_end() -> None:
    # A pointer to itself, and two pointers to each other: both rejected, neither loops.
    with pytest.raises(NotReady, match="does not point backwards"):
        dnswire.read_name(b"\x00" * 12 + b"\xc0\x0c", 12)
    with pytest.raises(NotReady, match="does not point backwards"):
        dnswire.read_name(b"\x00" * 12 + b"\xc0\x0e\xc0\x0c", 12)
    # A chain of backward pointers ends; a name that grows past 255 bytes is refused.
    assert dnswire.read_name(b"\x01a\x00\x01b\xc0\x00\xc0\x03", 7) == ("b.a", 9)
    long = b"".join(b"\x3f" + b"x" * 63 for _ in range(5)) + b"\x00"
    with pytest.raises(NotReady, match="too long"):
        dnswire.read_name(long, 0)


def test_odd_label_bytes_are_escaped() -> None:
    assert dnswire.read_name(b"\x03a.\n\x00", 0) == ("a\\046\\010", 5)


@settings(max_examples=3000)
@given(st.binary(max_size=600), st.sampled_from(sorted(dns.TYPES)))
def test_arbitrary_bytes_give_mismatch_notready_or_a_response(data: bytes, rtype: str) -> None:
    try:
        response = dnswire.parse_response(
            data, "db.test", rtype, struct.unpack("!H", data[:2])[0] if len(data) > 1 else 0
        )
    except (dnswire.Mismatch, NotReady):
        return
    assert isinstance(response, dnswire.Response)


@settings(max_examples=3000)
@given(st.binary(max_size=400), st.sampled_from(sorted(dns.TYPES)))
def test_arbitrary_records_after_our_question(tail: bytes, rtype: str) -> None:
    """Past the header and question, where the interesting parsing is: records of any shape."""
    message = (
        struct.pack("!HHHHHH", 7, 0x8180, 1, 3, 0, 0)
        + QUESTION
        + struct.pack("!HH", dnswire.TYPES[rtype], 1)
        + tail
    )
    try:
        response = dnswire.parse_response(message, "db.test", rtype, 7)
    except NotReady:
        return
    assert all(isinstance(value, str) for _, _, value in response.answers)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("dns:db.test", ("db.test", "A", None, 53)),
        ("dns:db.test.?type=aaaa", ("db.test", "AAAA", None, 53)),
        ("dns://127.0.0.1:5353/_x._tcp.db.test?type=SRV", ("_x._tcp.db.test", "SRV", "127.0.0.1", 5353)),
        ("dns://[::1]/db.test?CLASS=IN;TYPE=MX", ("db.test", "MX", "::1", 53)),
        ("DNS://localhost/b%C3%BCcher.test", ("xn--bcher-kva.test", "A", "localhost", 53)),
    ],
)
def test_addresses(address: str, expected: tuple[object, ...]) -> None:
    parsed = dns.parse(address, {})
    assert (parsed.name, parsed.rtype, parsed.server, parsed.port) == expected


@pytest.mark.parametrize(
    ("address", "block", "why"),
    [
        ("dns:db.test?type=MX", {}, "the system resolver answers only A and AAAA"),
        ("dns://127.0.0.1/db.test?type=SOA", {}, "unknown query"),
        ("dns://127.0.0.1:0/db.test", {}, "not 1-65535"),
        ("dns://127.0.0.1", {}, "needs a server and a name"),
        ("dns:a..b", {}, "labels of 1-63"),
        ("dns:a b", {}, "characters no host name has"),
        ("tcp:db.test", {}, "starts with dns:"),
        ("dns:db.test", {"match": "("}, "not a regular expression"),
        ("dns:db.test", {"expect": ["not-an-ip"]}, "is not an A address"),
        ("dns://127.0.0.1/db.test?type=MX", {"expect": ["mx.test"]}, "write it as e.g. '10 mail.test'"),
    ],
)
def test_bad_addresses_and_blocks(address: str, block: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        dns.parse(address, block)
    assert "e.g." in str(caught.value)


def test_describe() -> None:
    line = dns.describe(dns.parse("dns://[::1]:53/db.test?type=AAAA", {"expect": ["::1"], "match": "\n"}))
    assert line == "db.test type=AAAA via server [::1]:53 expect=::1 match=\\n"
