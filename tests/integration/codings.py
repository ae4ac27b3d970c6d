"""Decoders for the content codings askr's compression produces (askr/front/compression.py), for
the tests that read compressed answers back."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import zstandard


def decode(coding: str, data: bytes) -> bytes:
    """A whole body in `coding` ("gzip", "br" or "zstd")."""
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def incremental_decoder(coding: str) -> Callable[[bytes], bytes]:
    """Decodes a streamed body piece by piece, as it arrives."""
    if coding == "gzip":
        return zlib.decompressobj(31).decompress
    if coding == "br":
        return brotli.Decompressor().process
    return zstandard.ZstdDecompressor().decompressobj().decompress
