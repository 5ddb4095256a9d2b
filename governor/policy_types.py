"""The policy file's value types: strict numbers, strings without NUL bytes, names that are not blank, URLs with a host.

Split from governor/policy.py (which re-exports them), so the models there stay one file's worth.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the field and the bad value.

    `errors` holds the same as objects, `{"path", "value", "message"}` each (`path` and `value` are None for a file
    that cannot be read or parsed at all), for `governor validate --json` and editors."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else [{"path": None, "value": None, "message": message}]


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a NUL byte is not allowed")
    return value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return _text(value)


def _url(value: str, schemes: tuple[str, ...]) -> str:
    _text(value)
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("a URL may not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parses the port, raising on a bad one
    except ValueError as err:
        raise ValueError(f"not a URL ({err})") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be an absolute {' or '.join(s + '://' for s in schemes)} URL with a host")
    return value


def _slack_user_id(value: str) -> str:
    if not re.fullmatch(r"[UW][A-Z0-9]{2,20}", value):
        raise ValueError(f"{value!r} is not a Slack user id (`U…` or `W…`, capitals and digits, as in the profile)")
    return value


def _http_url(value: str) -> str:
    return _url(value, ("http", "https"))


# Policy value types: numbers are strict (a YAML `true` is no latency; an int is fine where a float is asked),
# strings carry no NUL byte, names are not blank, URLs are absolute http(s) URLs with a host.
Text = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, AfterValidator(_non_blank)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
SlackUserId = Annotated[str, AfterValidator(_slack_user_id)]
PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0)]
Rate = Annotated[float, Field(strict=True, ge=0, le=1)]
"""A share, 0..1 (0.05 is 5 %)."""


class _Strict(BaseModel):
    """A policy section: unknown fields are refused (a typo is an error, not a default), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
