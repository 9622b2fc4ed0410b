"""Request bodies: Content-Encoding with a size limit on what comes out, and media types."""

from __future__ import annotations

import zlib

_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
# Output is taken in steps of at most this many bytes: zlib builds each step's result in
# blocks and then copies them into one, so a step's size is what that copy costs at most.
_STEP = 1 << 20
# Input is given to zlib this many bytes at a time: what follows a member's end is copied
# out (`unused_data`), and that copy must not be the whole rest of the body.
_FEED = 64 * 1024
# A gzip body may be several members one after the other (RFC 1952 §2.2); more than this
# many is refused, as no sender needs them and each costs a decompressor.
MAX_MEMBERS = 1000


class BodyTooLarge(Exception):
    """The body, once decompressed, is larger than `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")
        self.limit = limit


class SlowBody(Exception):
    """The body is still arriving after `limits.slow_body_seconds`, and every slot for
    slow bodies (`limits.max_slow_requests`) is taken."""


class BadEncoding(ValueError):
    """The Content-Encoding is not supported, or the body is not valid in it."""


class UnsupportedEncoding(BadEncoding):
    """A Content-Encoding this server does not decode (answered 415)."""


def is_identity(content_encoding: str | None) -> bool:
    """True when the body is sent as it is (no Content-Encoding, or `identity`)."""
    return (content_encoding or "").strip().lower() in ("", "identity")


def read_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding (identity, gzip, deflate) removed, at most `limit` bytes.

    Decompression stops as soon as the output passes `limit`, so a small compressed body
    cannot make the process allocate much more than `limit` bytes.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise BodyTooLarge(limit)
        return raw
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {content_encoding!r}")
    try:
        return _inflate(raw, wbits, limit)
    except zlib.error as exc:
        raise BadEncoding(f"body is not valid {encoding}: {exc}") from None


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Every member of `data`, in time linear in its size and at most `limit` bytes out."""
    view = memoryview(data)
    parts: list[bytes] = []
    size = offset = members = 0
    while offset < len(view):
        members += 1
        if members > MAX_MEMBERS:
            raise BadEncoding(f"body has more than {MAX_MEMBERS} compressed members")
        inflater = zlib.decompressobj(wbits)
        pending: bytes | memoryview = b""
        while not inflater.eof:
            if not pending:
                pending = view[offset:offset + _FEED]
                offset += len(pending)
            part = inflater.decompress(pending, min(limit + 1 - size, _STEP))
            if not part and not pending:  # no input left and nothing more came out
                raise BadEncoding("compressed body is truncated")
            size += len(part)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(part)
            pending = inflater.unconsumed_tail
        offset -= len(inflater.unused_data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def media_type(content_type: str | None) -> str:
    """The media type, lower-cased, without parameters (`Text/Plain; charset=x` -> `text/plain`)."""
    return (content_type or "").split(";", 1)[0].strip().lower()
