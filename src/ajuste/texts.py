"""Texts as every tokenizer, file and JSON response can take them."""

from __future__ import annotations

__all__ = ["valid_text"]


def valid_text(value: object) -> str:
    """``value`` as a text: ``None`` is empty, anything else its ``str``, and each lone UTF-16 surrogate, which
    UTF-8 cannot encode (a JSON escape such as ``"\\ud800"``, or a command-line byte that is not UTF-8), U+FFFD.

    Such a character made a tokenizer, a written file or a served response fail, and in ``ajuste serve`` the
    whole batch of other clients' texts it was predicted with."""
    text = "" if value is None else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # halves of a pair become the pair; a lone one, U+FFFD
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
