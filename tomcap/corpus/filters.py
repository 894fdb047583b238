"""Caption normalisation and filters as polars expressions (so they stream with the reader)."""
from __future__ import annotations

import hashlib

import polars as pl

from ..constants import FINGERPRINT_CHARS
from .config import FilterConfig

TEXT, REASON = "text", "reason"
REASONS = ("empty", "non_printable", "too_short", "too_long")
"""Filter reasons in the order they are checked; a row is counted under the first that applies."""

_NON_PRINTABLE = r"[\p{Cc}\p{Cf}\p{Co}\p{Cn}]"
"""Control, format, private-use and unassigned code points (checked after whitespace is collapsed)."""
_WORD = r"\S+"


def normalized_text(raw: pl.Expr, cfg: FilterConfig) -> pl.Expr:
    """Unicode normal form, every whitespace run to one space, stripped, optionally lowercased."""
    text = raw.fill_null("")
    if cfg.unicode_form != "none":
        text = text.str.normalize(cfg.unicode_form)
    text = text.str.replace_all(r"\s+", " ").str.strip_chars()
    return text.str.to_lowercase() if cfg.lowercase else text


def drop_reason(text: pl.Expr, cfg: FilterConfig) -> pl.Expr:
    """Why a normalised caption is dropped (null when it is kept)."""
    words = text.str.count_matches(_WORD)
    checks = [
        ("empty", text == ""),
        ("non_printable", text.str.contains(_NON_PRINTABLE) if cfg.drop_non_printable else pl.lit(False)),
        ("too_short", words < cfg.min_words),
        ("too_long", words > cfg.max_words),
    ]
    expr = pl.lit(None, pl.String)
    for reason, cond in reversed(checks):
        expr = pl.when(cond).then(pl.lit(reason)).otherwise(expr)
    return expr


def caption_id(text: str) -> str:
    """Stable id of a normalised caption: the same text gets the same id in any corpus."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=FINGERPRINT_CHARS // 2).hexdigest()


def caption_ids(texts: pl.Series) -> pl.Series:
    return pl.Series("caption_id", [caption_id(t) for t in texts.to_list()], dtype=pl.String)
