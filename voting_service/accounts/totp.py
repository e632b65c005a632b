"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): SHA-1, 6 digits, 30 s.

What every authenticator app reads from an ``otpauth://`` URI. A code is accepted one step
either side of now (clock drift) and each step at most once per account (``totp_step``), so
a code seen over a shoulder cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

DIGITS = 6
PERIOD = 30
DRIFT_STEPS = 1
ISSUER = "江苏最美工匠投票运营台"


def new_secret() -> str:
    """160 random bits (RFC 4226's recommended length), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(secret: str, counter: int) -> str:
    """RFC 4226 §5.3: HMAC-SHA-1 of the counter, dynamic truncation, modulo 10^digits."""
    mac = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def step_of(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def code_at(secret: str, now: float | None = None) -> str:
    return hotp(secret, step_of(now))


def match(secret: str, code: str, after_step: int, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to (within the drift), if it is later than
    ``after_step`` (the last one accepted); ``None`` otherwise."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_of(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step), code) and step > after_step:
            found = step
    return found


def uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The Key URI an authenticator app scans: ``otpauth://totp/Issuer:account?...``."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": PERIOD}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as an inline SVG element (no image library, no script)."""
    import segno

    svg: str = segno.make(text, error="m").svg_inline(
        scale=5, dark="#111", light="#fff", omitsize=True, title="TOTP")
    return svg
