"""Admin access: password hashing, where the password comes from, when shared mode is on."""
from __future__ import annotations

import stat

import pytest

from assistant.access import (PASSWORD_ENV, admin_access, hash_password, is_shared,
                              verify_password, write_password)
from errors import AmendError


def test_hash_and_verify():
    stored = hash_password("correct horse", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert not verify_password("", stored)
    assert hash_password("x" * 9) != hash_password("x" * 9)  # salted
    for broken in ("", "plain", "md5$1$aa$bb", "pbkdf2_sha256$x$zz$yy"):
        assert not verify_password("anything", broken)


def test_shared_when_bound_beyond_loopback_or_asked():
    assert not is_shared("127.0.0.1") and not is_shared("localhost")
    assert is_shared("0.0.0.0") and is_shared("192.168.1.5")
    assert is_shared("127.0.0.1", flag=True)


def test_password_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert admin_access(tmp_path, shared=False).check("")  # desktop: always open
    with pytest.raises(AmendError, match="needs an admin password"):
        admin_access(tmp_path, shared=True)
    path = write_password(tmp_path, "a long password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    access = admin_access(tmp_path, shared=True)
    assert access.check("a long password") and not access.check("a long passwor")
    monkeypatch.setenv(PASSWORD_ENV, "from the environment")
    access = admin_access(tmp_path, shared=True)
    assert access.check("from the environment") and not access.check("a long password")
    monkeypatch.setenv(PASSWORD_ENV, "short")
    with pytest.raises(AmendError, match="at least"):
        admin_access(tmp_path, shared=True)
    with pytest.raises(AmendError, match="at least"):
        write_password(tmp_path, "short")
    monkeypatch.delenv(PASSWORD_ENV)
    path.write_text("garbage")
    with pytest.raises(AmendError, match="does not hold a password hash"):
        admin_access(tmp_path, shared=True)
