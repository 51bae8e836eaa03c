"""Triton's binary tensor data extension, the framing only: a JSON header of
`Inference-Header-Content-Length` bytes, then each binary tensor's raw bytes in order. Numbers
are little-endian; a BYTES element is its length (4 bytes, little-endian), then its bytes.
Every fault of the framing is a 400 `Refusal` (rule `binary`, or `unicode` for text that is
not UTF-8) naming the input."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from gitml.serve.errors import Refusal

HEADER_LENGTH = "inference-header-content-length"
NUMPY_TYPES = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data of a request (`header_length`: the
    Inference-Header-Content-Length header, None: all JSON)."""
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not text.isdigit() or not text.isascii():
        raise Refusal(
            400,
            "inference-header-content-length",
            "binary",
            f"Inference-Header-Content-Length {header_length[:60]!r} is not a number of bytes",
        )
    size = int(text)
    if size > len(body):
        raise Refusal(
            400,
            "inference-header-content-length",
            "binary",
            f"Inference-Header-Content-Length is {size} bytes, but the body has only {len(body)}",
        )
    return body[:size], body[size:]


def read_numbers(raw: bytes, name: str, datatype: str, count: int) -> np.ndarray:
    """`count` numbers of `datatype` (a key of NUMPY_TYPES), refused unless `raw` holds
    exactly them."""
    dtype = NUMPY_TYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise Refusal(
            400,
            name,
            "binary",
            f"input {name!r}: {count} {datatype} elements take {count * dtype.itemsize} "
            f"bytes, but binary_data_size is {len(raw)}",
        )
    return np.frombuffer(raw, dtype=dtype)


def read_bytes(raw: bytes, name: str, count: int) -> list[str]:
    """BYTES elements: a 4-byte little-endian length, then that many bytes of UTF-8."""
    elements: list[str] = []
    position, end = 0, len(raw)
    for k in range(count):
        if position + 4 > end:
            raise Refusal(
                400,
                name,
                "binary",
                f"input {name!r}: binary data ends before element {k} of {count} "
                f"(its {end} bytes hold {k} elements)",
            )
        (length,) = _LENGTH.unpack_from(raw, position)
        position += 4
        if position + length > end:
            raise Refusal(
                400,
                name,
                "binary",
                f"input {name!r}: element {k} declares {length} bytes, past the end of the "
                f"input's {end} bytes of binary data",
            )
        try:
            elements.append(raw[position : position + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise Refusal(
                400,
                name,
                "unicode",
                f"input {name!r}: element {k} is not valid UTF-8 text",
            ) from None
        position += length
    if position != end:
        raise Refusal(
            400,
            name,
            "binary",
            f"input {name!r}: {end - position} bytes are left after its {count} elements",
        )
    return elements


def encode_bytes(texts: Sequence[str]) -> bytes:
    """A BYTES tensor's binary data: each element's UTF-8 length (4 bytes, little-endian),
    then the element."""
    parts: list[bytes] = []
    for text in texts:
        data = text.encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)
