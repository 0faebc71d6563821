"""``ServeSettings``: where the server listens, how it batches, what it accepts, and its API key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["ServeSettings"]


class ServeSettings(BaseModel):
    """The settings of ``ajuste serve``; each field is one flag (``max_batch`` is ``--max-batch``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 listens on every interface."
    )
    port: int = Field(8000, ge=0, le=65_535, description="Port to listen on; 0 picks a free one, printed at start.")
    max_batch: int = Field(
        64, ge=1, le=65_536, description="Texts per model call, gathered from the requests that arrive together."
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="How long a request may wait for others to share its model call; at 0, requests that arrive "
        "while the model computes share its next call, and none waits when it is idle.",
    )
    max_texts: int = Field(256, ge=1, le=1_000_000, description="Texts per request.")
    max_chars: int = Field(20_000, ge=1, description="Characters per text.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="Bytes per request body.")
    api_key: SecretStr | None = Field(
        None,
        description="Key that every endpoint but /healthz and the try-it page (GET /) requires; default "
        "$AJUSTE_API_KEY, else none.",
    )

    @field_validator("api_key")
    @classmethod
    def _fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        # The key travels in an HTTP header, which strips spaces and is not reliably UTF-8. The message
        # says what is wrong with the key without repeating it.
        key = None if value is None else value.get_secret_value()
        if key is not None and not key:
            raise ValueError("must not be empty, got an empty key")
        if key is not None and not all("!" <= c <= "~" for c in key):
            raise ValueError(
                "must be visible ASCII characters without spaces (it travels in an HTTP header), "
                "got one with a space, a control or a non-ASCII character"
            )
        return value
