"""Read content files as text, detecting GBK/GB18030 files saved by Chinese Windows tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes


@dataclass
class DecodedText:
    text: str
    encoding: str
    # A human message when the file was not plain UTF-8 (e.g. read as GB18030).
    note: str = ""


class DecodeError(ValueError):
    pass


def decode_bytes(raw: bytes) -> DecodedText:
    """Decode UTF-8 (with or without BOM), else GB18030, else the detected encoding.

    :raises DecodeError: when the bytes are not text in any encoding we can name.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        return DecodedText(raw[3:].decode("utf-8", errors="strict"), "utf-8-sig")
    try:
        return DecodedText(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in raw[:4096]:
        raise DecodeError("file is binary, not text (or UTF-16, which is not supported)")
    # GB18030 is a superset of GBK and GB2312; Excel and Notepad on Chinese Windows save these.
    try:
        return DecodedText(
            raw.decode("gb18030"),
            "gb18030",
            "file is GBK/GB18030-encoded; it was read, but please save it as UTF-8",
        )
    except UnicodeDecodeError:
        pass
    best = from_bytes(raw).best()
    if best is None:
        raise DecodeError("file is not text in UTF-8, GBK/GB18030 or any detectable encoding")
    return DecodedText(
        str(best), best.encoding, f"file is {best.encoding}-encoded; please save it as UTF-8"
    )


def read_text(path: Path) -> DecodedText:
    """Read ``path`` as text with :func:`decode_bytes`, normalising line endings."""
    decoded = decode_bytes(path.read_bytes())
    decoded.text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
    return decoded
