"""Texts as every tokenizer, file and JSON response can take them."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["text_items", "valid_text"]


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


def text_items(values: Iterable[object], what: str) -> list[str]:
    """The items of ``values`` as texts for a model: a missing one (None, NaN) is empty, a number its digits; a
    list, mapping or bytes is refused with a ConfigError naming its row (its ``str`` would be read as words)."""
    from ajuste.errors import ConfigError

    texts = []
    for row, value in enumerate(values):
        if isinstance(value, float) and value != value:  # NaN: pandas' and NumPy's missing text
            value = None
        elif not isinstance(value, (str, int, float)) and value is not None:
            bytes_like = isinstance(value, (bytes, bytearray))
            raise ConfigError(
                f"{what}: text {row} is {'bytes' if bytes_like else 'a ' + type(value).__name__}, not a text",
                found=repr(value)[:60],
                fix="Decode it first (value.decode('utf-8'))." if bytes_like else "Give each text as a string.",
            )
        texts.append(valid_text(value))
    return texts
