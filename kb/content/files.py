"""Read content files as text, detecting GBK/GB18030 files saved by Chinese Windows tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes
from flask_babel import lazy_gettext as _l


@dataclass
class DecodedText:
    text: str
    encoding: str
    # A message (an _l() text) when the file was not plain UTF-8 (e.g. read as GB18030).
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
        raise DecodeError(_l("文件是二进制数据，不是文本（或是不支持的 UTF-16 编码）"))
    # GB18030 is a superset of GBK and GB2312; Excel and Notepad on Chinese Windows save these.
    try:
        return DecodedText(
            raw.decode("gb18030"),
            "gb18030",
            _l("文件是 GBK/GB18030 编码，已读取，但请另存为 UTF-8"),
        )
    except UnicodeDecodeError:
        pass
    best = from_bytes(raw).best()
    if best is None:
        raise DecodeError(_l("文件不是 UTF-8、GBK/GB18030 或其他可识别编码的文本"))
    return DecodedText(
        str(best), best.encoding, _l("文件是 %(encoding)s 编码，请另存为 UTF-8", encoding=best.encoding)
    )


def read_text(path: Path) -> DecodedText:
    """Read ``path`` as text with :func:`decode_bytes`, normalising line endings."""
    decoded = decode_bytes(path.read_bytes())
    decoded.text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
    return decoded
