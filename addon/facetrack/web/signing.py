"""Signed, expiring URLs: HMAC-SHA256 over the path and the expiry time.

A clip URL sent in a notification carries ``?exp=<epoch seconds>&sig=<hex>``; the server recomputes
the HMAC with its secret and serves the file only if it matches and has not expired. The secret is
256 random bits kept in a file (mode 0600) and reused across restarts, so URLs in old notifications
stay valid until they expire.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from pathlib import Path

_LOG = logging.getLogger(__name__)

SECRET_BYTES = 32
_MIN_SECRET_BYTES = 16
_EXP_RE = re.compile(r"^[0-9]{1,12}$")
_SIG_RE = re.compile(r"^[0-9a-f]{64}$")


class UrlSigner:
    """Signs and verifies ``(path, expiry)`` pairs with HMAC-SHA256."""

    def __init__(self, secret: bytes) -> None:
        """``secret``: at least 16 random bytes (``load_or_create_secret`` gives 32)."""
        if not isinstance(secret, bytes) or len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the signing secret must be at least {_MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def _mac(self, path: str, exp: int) -> str:
        return hmac.new(self._secret, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, expires_at: int) -> str:
        """The query string ``exp=<expires_at>&sig=<hex HMAC-SHA256 of "path\\nexp">``."""
        if "\n" in path or not path.startswith("/"):
            raise ValueError("path must be absolute and on one line")
        exp = int(expires_at)
        if exp < 0 or not _EXP_RE.match(str(exp)):
            raise ValueError("expires_at out of range")
        return f"exp={exp}&sig={self._mac(path, exp)}"

    def verify(self, path: str, exp: int | str | None, sig: str | None, now: float | None = None) -> bool:
        """True if ``sig`` is the signature of ``(path, exp)`` and ``exp`` is still in the future.

        ``exp`` and ``sig`` may come straight from a query string (strings, or None when missing);
        anything malformed is False. The comparison is constant-time.
        """
        if exp is None or sig is None or "\n" in path:
            return False
        exp_text = str(exp) if isinstance(exp, int) else exp
        if not _EXP_RE.match(exp_text) or not _SIG_RE.match(sig):
            return False
        exp_value = int(exp_text)
        expected = self._mac(path, exp_value)
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii")):
            return False
        return (time.time() if now is None else now) < exp_value


def load_or_create_secret(path: Path) -> bytes:
    """The 32-byte secret stored at ``path``, created (mode 0600) if missing or unusable.

    Creation is atomic (a temporary file linked into place), so concurrent callers agree on one
    secret; an existing file with laxer permissions is tightened to 0600.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    if data is not None:
        if len(data) == SECRET_BYTES:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return data
        _LOG.warning("signing secret file has the wrong size; replacing it (older signed URLs become invalid)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(SECRET_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        if data is None:
            try:
                os.link(tmp, path)
            except FileExistsError:
                # Another process created it first: use theirs.
                return load_or_create_secret(path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return secret


def derive_stream_token(secret: bytes) -> str:
    """The stream token ``http.stream_token: auto`` uses: 32 hex characters of
    HMAC-SHA256(secret, "facetrack stream token"), stable across restarts, unguessable without
    the secret."""
    return hmac.new(secret, b"facetrack stream token", hashlib.sha256).hexdigest()[:32]


def secret_and_stream_token(
    secret_file: str | None, db_path: str, stream_token: str | None
) -> tuple[bytes, str | None]:
    """The service's URL-signing secret and the stream token its snapshot/MJPEG endpoints require.

    Args:
        secret_file: ``http.secret_file``; ``None`` means ``url_secret`` next to the face library.
        db_path: the face library (``db_path``).
        stream_token: ``http.stream_token``: ``"auto"`` derives it from the secret
            (:func:`derive_stream_token`), ``None`` means no token.
    """
    path = Path(secret_file) if secret_file else Path(db_path).resolve().parent / "url_secret"
    secret = load_or_create_secret(path)
    if stream_token == "auto":  # noqa: S105 - a mode, not a secret
        return secret, derive_stream_token(secret)
    return secret, stream_token
