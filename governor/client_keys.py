"""The gateway's client keys (virtual keys): a JSON file of named keys, each stored as its SHA-256 hash only.

A key is `sk-gov-` + 32 random bytes (urlsafe base64), shown once when it is made; the file keeps its name, hash,
the services it may call and its optional limits (a token-bucket rate and a concurrency cap). SHA-256 without a salt
is enough for keys this random (256 bits: no dictionary to try). The gateway and `python -m gateway keys` read and
write the file through this module; `governor up --demo` makes the demo's key with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator

from governor.policy_types import PolicyError, _Strict

__all__ = ["KEY_PREFIX", "ClientKey", "KeyFile", "KeyFileError", "add_key", "hash_key", "load_keys", "new_key"]

KEY_PREFIX = "sk-gov-"
MAX_KEY_FILE_BYTES = 4 << 20


class KeyFileError(PolicyError):
    """A key file that cannot be read, parsed or written; the message names the file and what is wrong."""


class ClientKey(_Strict):
    """One client key: who holds it, what it may call, how fast."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$", max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The hex SHA-256 of the key; the key itself is never stored."""
    services: list[str] = Field(min_length=1)
    """Services (policy `service` names) this key may call; `*` for every service."""
    rate_limit_rps: float | None = Field(default=None, gt=0, le=1_000_000)
    """Requests per second (token bucket); None: unlimited."""
    burst: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    """The bucket's size (default: the rate rounded up, at least 1)."""
    max_concurrent: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    """Requests of this key in flight at once; None: unlimited."""
    created_at: str = ""

    @field_validator("services")
    @classmethod
    def _service_names(cls, services: list[str]) -> list[str]:
        for s in services:
            if s != "*" and not s.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"service {s!r} is not a service name (letters, digits, - and _) or '*'")
        return services

    def allows(self, service: str) -> bool:
        return "*" in self.services or service in self.services


class KeyFile(_Strict):
    keys: list[ClientKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> KeyFile:
        names = [k.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"key names must be unique, repeated: {', '.join(dupes)}")
        hashes = [k.sha256 for k in self.keys]
        if len(hashes) != len(set(hashes)):
            raise ValueError("two keys have the same sha256")
        return self


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_keys(path: str | Path) -> KeyFile:
    """The key file; a missing, unreadable or invalid one is a KeyFileError naming the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read the key file ({err.strerror or err})") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: key file is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise KeyFileError(f"{path}: not a JSON key file ({err})") from None
    try:
        return KeyFile.model_validate(data)
    except ValidationError as err:
        lines = [f"{path}: invalid key file"]
        for e in err.errors()[:20]:
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {where}: {e['msg']}")
        raise KeyFileError("\n".join(lines)) from None


def add_key(
    path: str | Path,
    name: str,
    services: list[str],
    rate_limit_rps: float | None = None,
    burst: int | None = None,
    max_concurrent: int | None = None,
) -> str:
    """Make a key, store its hash in the file (created 0600 when missing, replaced atomically) and return the key:
    the only time it is ever seen. Refuses a name already in the file."""
    path = Path(path)
    current = load_keys(path) if path.exists() else KeyFile()
    if any(k.name == name for k in current.keys):
        raise KeyFileError(f"{path}: a key named {name!r} exists already (revoke it first, or pick another name)")
    key = new_key()
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        entry = ClientKey(
            name=name,
            sha256=hash_key(key),
            services=services,
            rate_limit_rps=rate_limit_rps,
            burst=burst,
            max_concurrent=max_concurrent,
            created_at=created,
        )
    except ValidationError as err:
        e = err.errors()[0]
        raise KeyFileError(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") from None
    write_keys(path, KeyFile(keys=[*current.keys, entry]))
    return key


def remove_key(path: str | Path, name: str) -> None:
    path = Path(path)
    current = load_keys(path)
    kept = [k for k in current.keys if k.name != name]
    if len(kept) == len(current.keys):
        known = ", ".join(k.name for k in current.keys) or "none"
        raise KeyFileError(f"{path}: no key named {name!r} (known: {known})")
    write_keys(path, KeyFile(keys=kept))


def write_keys(path: Path, keys: KeyFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(keys.model_dump(exclude_none=True), indent=2) + "\n")
    os.replace(tmp, path)
