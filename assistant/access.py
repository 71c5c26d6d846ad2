"""Who may use the admin tab: always the local user; in shared mode, whoever knows the password.

Shared mode is on when the app is bound beyond the loopback interface or started with
`--shared`. The admin password comes from $AMEND_ADMIN_PASSWORD or from a salted PBKDF2 hash
in `<data dir>/admin_password` (written by `python ui.py --set-admin-password`); without either
the app refuses to start in shared mode. Only hashes are kept, and comparisons take constant
time.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from errors import AmendError

PASSWORD_ENV = "AMEND_ADMIN_PASSWORD"
PASSWORD_FILE = "admin_password"
ITERATIONS = 200_000
MIN_PASSWORD_CHARS = 8
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_shared(host: str, flag: bool = False) -> bool:
    """Shared when asked for, or when anyone but this machine can reach the server."""
    return flag or host not in LOOPBACK


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.strip().split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = hash_password(password or "", bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected.split("$")[-1], digest)


def write_password(data_dir: Path, password: str) -> Path:
    """Store the hash of a new admin password (owner-readable only)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AmendError(f"the admin password needs at least {MIN_PASSWORD_CHARS} characters")
    path = Path(data_dir) / PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(hash_password(password) + "\n", encoding="utf-8")
    partial.chmod(0o600)
    os.replace(partial, path)
    return path


@dataclass(frozen=True)
class AdminAccess:
    """Checks admin passwords; `open` when no password is needed (single-user desktop)."""

    shared: bool
    stored_hash: str | None = None

    @property
    def open(self) -> bool:
        return not self.shared

    def check(self, password: str) -> bool:
        if self.open:
            return True
        return self.stored_hash is not None and verify_password(password, self.stored_hash)


def admin_access(data_dir: Path, shared: bool) -> AdminAccess:
    """The access rule for this run; raises when shared mode has no password to check."""
    if not shared:
        return AdminAccess(shared=False)
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        if len(from_env) < MIN_PASSWORD_CHARS:
            raise AmendError(f"${PASSWORD_ENV} needs at least {MIN_PASSWORD_CHARS} characters")
        return AdminAccess(shared=True, stored_hash=hash_password(from_env))
    path = Path(data_dir) / PASSWORD_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored.startswith("pbkdf2_sha256$"):
            return AdminAccess(shared=True, stored_hash=stored)
        raise AmendError(f"{path} does not hold a password hash; set it again with "
                         "`python ui.py --set-admin-password`")
    raise AmendError("shared mode (the app is reachable beyond this machine) needs an admin "
                     f"password: set ${PASSWORD_ENV}, or run `python ui.py "
                     "--set-admin-password` once; or serve on 127.0.0.1 only")
