"""Email over SMTP (smtplib in a thread), with a Message-ID derived from the idempotency key.

A receiving system that keeps Message-IDs sees a resend as the same message; every mail of one incident threads
under one root Message-ID through `In-Reply-To` and `References` (RFC 5322 section 3.6.4).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from activities.notify.base import Channel, DeliveryError, config_error, event_kind
from governor.actions import ChannelDelivery, NotifyInput
from governor.policy import ChannelSpec

DEFAULT_URL = "smtp://127.0.0.1:25"
DEFAULT_SENDER = "fallback-governor@localhost"
SUBJECT_MAX = 200


def message_id(key: str, domain: str) -> str:
    """`<hex@domain>`: the key's SHA-256 (a key's `:` is not allowed in a Message-ID's left part)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_email(input: NotifyInput, spec: ChannelSpec) -> EmailMessage:
    sender = spec.sender or DEFAULT_SENDER
    domain = sender.rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    tag = "RESOLVED" if event_kind(input.event) == "resolve" else (input.severity.value if input.severity else "INFO")
    subject = _one_line(f"[{tag}] {input.title}")
    msg["Subject"] = subject if len(subject) <= SUBJECT_MAX else subject[: SUBJECT_MAX - 1] + "…"
    msg["From"] = sender
    msg["To"] = ", ".join(spec.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(input.idempotency_key, domain)
    root = message_id(input.occurrence or input.incident_id, domain)  # one thread per occurrence
    msg["In-Reply-To"] = root
    msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    msg["X-Governor-Incident"] = _one_line(input.incident_id)
    msg["X-Governor-Event"] = _one_line(input.event)
    msg["X-Governor-Audience"] = input.audience.value
    msg["X-Governor-Idempotency-Key"] = _one_line(input.idempotency_key)

    lines = [input.title, "=" * min(len(input.title), 78), ""]
    if input.message:
        lines += [input.message, ""]
    rows = [("Incident", input.incident_id), ("Event", input.event), ("Audience", input.audience.value)]
    if input.severity:
        rows.append(("Severity", input.severity.value))
    rows += [(str(k), str(v)) for k, v in input.details.items() if not isinstance(v, dict | list)]
    width = max(len(k) for k, _ in rows)
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += ["", f"Idempotency key: {input.idempotency_key}", "-- Fallback Governor"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


class EmailChannel(Channel):
    """Send through `spec.url` (`smtp://[user@]host:port`, STARTTLS when offered, or `smtps://` for implicit TLS);
    the password, if any, from the environment variable `secret_env` names."""

    type = "email"

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout_s = timeout_s

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = urlsplit(spec.url or DEFAULT_URL)
        try:
            port = url.port
        except ValueError:
            raise config_error(spec, f"url {spec.url!r} has a bad port") from None
        if url.scheme not in {"smtp", "smtps"} or not url.hostname:
            raise config_error(spec, f"url {spec.url!r} is not smtp://host:port or smtps://host:port")
        host = url.hostname
        port = port or (465 if url.scheme == "smtps" else 25)
        user = unquote(url.username) if url.username else None
        password = None
        if user:
            if not spec.secret_env or not os.environ.get(spec.secret_env):
                raise config_error(spec, f"url names user {user!r}: set secret_env to a variable holding the password")
            password = os.environ[spec.secret_env]
        msg = build_email(input, spec)
        target = f"{url.scheme}://{host}:{port} to {', '.join(spec.to)}"
        refused = await asyncio.to_thread(self._send, url.scheme, host, port, user, password, msg, target)
        error = f"refused recipients: {', '.join(refused)}" if refused else ""
        return ChannelDelivery(channel=spec.type, ok=True, status_code=250, error=error, target=target)

    def _send(
        self, scheme: str, host: str, port: int, user: str | None, password: str | None, msg: EmailMessage, target: str
    ) -> dict[str, tuple[int, bytes]]:
        try:
            smtp: smtplib.SMTP
            if scheme == "smtps":
                smtp = smtplib.SMTP_SSL(host, port, timeout=self._timeout_s, context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(host, port, timeout=self._timeout_s)
            with smtp:
                smtp.ehlo()
                if scheme == "smtp" and smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if user and password:
                    smtp.login(user, password)
                return smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryError(
                f"{target}: login refused ({err.smtp_code})", retryable=False, status_code=err.smtp_code, target=target
            ) from None
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            reason = "; ".join(f"{r}: {c} {m.decode(errors='replace')}" for r, (c, m) in err.recipients.items())
            raise DeliveryError(
                f"{target}: all recipients refused ({reason})",
                retryable=all(400 <= c < 500 for c in codes),
                status_code=codes[0] if codes else None,
                target=target,
            ) from None
        except smtplib.SMTPResponseException as err:
            text = err.smtp_error.decode(errors="replace") if isinstance(err.smtp_error, bytes) else str(err.smtp_error)
            raise DeliveryError(
                f"{target}: SMTP {err.smtp_code} {text}",
                retryable=400 <= err.smtp_code < 500,
                status_code=err.smtp_code,
                target=target,
            ) from None
        except smtplib.SMTPNotSupportedError as err:
            raise DeliveryError(f"{target}: {err}", retryable=False, target=target) from None
        except ssl.SSLCertVerificationError as err:
            raise DeliveryError(
                f"{target}: TLS certificate refused ({err.verify_message})", retryable=False, target=target
            ) from None
        except ConnectionRefusedError:
            raise DeliveryError(f"{target}: connection refused", retryable=True, target=target) from None
        except (smtplib.SMTPException, OSError) as err:  # disconnects, timeouts, resets, DNS
            raise DeliveryError(f"{target}: {type(err).__name__}: {err}", retryable=True, target=target) from None
