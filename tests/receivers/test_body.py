from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from flext_observability.receivers.body import BadEncoding, BodyTooLarge, media_type, read_body

PAYLOAD = b"resource spans " * 1000


def gz(data: bytes) -> bytes:
    """gzip without a timestamp: the same test ids in every process (pytest-xdist)."""
    return gzip.compress(data, mtime=0)


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (PAYLOAD, None),
        (PAYLOAD, ""),
        (PAYLOAD, "identity"),
        (gz(PAYLOAD), "gzip"),
        (gz(PAYLOAD), " GZip "),
        (gz(PAYLOAD), "x-gzip"),
        (zlib.compress(PAYLOAD), "deflate"),
        (zlib.compress(PAYLOAD), "Deflate"),
        # a gzip body may be several members one after the other (RFC 1952)
        (gz(PAYLOAD[:7000]) + gz(PAYLOAD[7000:]), "gzip"),
    ],
)
def test_bodies_are_decoded(raw: bytes, encoding: str | None):
    assert read_body(raw, encoding, limit=len(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (PAYLOAD + b"!", None),
        (gz(PAYLOAD + b"!"), "gzip"),
        (zlib.compress(PAYLOAD + b"!"), "deflate"),
        (gz(PAYLOAD) + gz(b"!"), "gzip"),
    ],
)
def test_one_byte_over_the_limit_is_too_large(raw: bytes, encoding: str | None):
    with pytest.raises(BodyTooLarge) as raised:
        read_body(raw, encoding, limit=len(PAYLOAD))
    assert raised.value.limit == len(PAYLOAD)


def test_empty_compressed_body_is_empty():
    assert read_body(b"", "gzip", limit=10) == b""


@pytest.mark.parametrize(
    ("raw", "encoding", "error_type", "message"),
    [
        (PAYLOAD, "br", BadEncoding, "unsupported Content-Encoding 'br'"),
        (PAYLOAD, "gzip, identity", BadEncoding, "unsupported Content-Encoding"),
        (PAYLOAD, "gzip", BadEncoding, "body is not valid gzip"),
        (gz(PAYLOAD)[:-20], "gzip", BadEncoding, "compressed body is truncated"),
        (gz(PAYLOAD) + b"trailing junk", "gzip", BadEncoding, "not valid gzip"),
        (gz(PAYLOAD), "deflate", BadEncoding, "body is not valid deflate"),
    ],
)
def test_bad_encodings(raw: bytes, encoding: str, error_type: type[Exception], message: str):
    with pytest.raises(error_type, match=message):
        read_body(raw, encoding, limit=1 << 20)


def test_gzip_bomb_stops_at_the_limit_without_inflating():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join([*(compressor.compress(zeros) for _ in range(200)), compressor.flush()])
    assert len(bomb) < 1 << 20  # 200 MiB of zeros in well under 1 MiB
    limit = 16 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            read_body(bomb, "gzip", limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit + (4 << 20)  # the limit plus a step of output, not the 200 MiB


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-protobuf", "application/x-protobuf"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("  application/json ;charset=UTF-8", "application/json"),
        ("", ""),
        (None, ""),
    ],
)
def test_media_type(content_type: str | None, expected: str):
    assert media_type(content_type) == expected


def test_many_members_are_refused_in_linear_time():
    import time

    from flext_observability.receivers.body import MAX_MEMBERS

    empty = gzip.compress(b"")
    assert read_body(empty * (MAX_MEMBERS - 1) + gzip.compress(PAYLOAD), "gzip",
                     len(PAYLOAD)) == PAYLOAD
    for raw in (empty * 300_000 + gzip.compress(PAYLOAD), zlib.compress(b"{}") * 300_000):
        started = time.process_time()
        with pytest.raises(BadEncoding, match=f"more than {MAX_MEMBERS} compressed members"):
            read_body(raw, "gzip" if raw[:2] == b"\x1f\x8b" else "deflate", 1 << 24)
        assert time.process_time() - started < 0.5


@pytest.mark.parametrize("member_end", [1000, 65535, 65536, 65537, 131072])
def test_members_are_found_across_input_steps(member_end: int):
    """A member ends anywhere relative to the 64 KiB steps the input is given to zlib in,
    here exactly at, before and after a step."""
    data = bytes(range(256)) * 1200
    cut = next(c for c in range(member_end, 0, -1)
               if len(gzip.compress(data[:c], 0)) == member_end)
    first, second = gzip.compress(data[:cut], 0), gzip.compress(data[cut:], 0)
    assert len(first) == member_end
    assert read_body(first + second, "gzip", len(data)) == data
