"""Start-up failures in one line: what is wrong, and the setting or flag that fixes it."""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from redis.exceptions import AuthenticationError, RedisError, ResponseError


class StartupError(Exception):
    """The hub cannot start; the message is the one line to show (without the command's name)."""


def listen_problem(what: str, host: str, port: int, error: BaseException, fix: str) -> str:
    """Describe why a listening socket could not be opened, naming the flag that fixes it."""
    code = getattr(error, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{what} {port} is in use; choose another with {fix}"
    if code == errno.EACCES:
        return f"no permission to listen on {what} {port}; choose one above 1023 with {fix}"
    if code == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return f"cannot listen on {host}: not an address of this machine; choose one with --host"
    reason = getattr(error, "strerror", None) or str(error)
    return f"cannot listen on {host}:{port} ({what}): {reason}; choose another with {fix}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else "unknown error"
    line = re.sub(r"^(FATAL|ERROR):\s+", "", line).rstrip(".")
    return line[:1].lower() + line[1:]


def database_where(settings_dict: dict[str, Any]) -> str:
    """Return the host:port of a PostgreSQL settings dict, as a user would write it."""
    host = settings_dict.get("HOST") or "the local socket"
    port = settings_dict.get("PORT") or 5432
    return f"{host}:{port}" if settings_dict.get("HOST") else host


def database_problem(error: BaseException, settings_dict: dict[str, Any]) -> str | None:
    """Describe a failure to connect to or use the database in one line; None for other errors."""
    where = database_where(settings_dict)
    for cause in _chain(error):
        if isinstance(cause, PoolTimeout):
            return f"cannot reach PostgreSQL at {where} (DATABASE_URL): {_first_line(str(cause))}"
        if isinstance(cause, psycopg.OperationalError) and cause.sqlstate is None:
            # A connection that failed (no SQLSTATE): the network's or the server's reason.
            reason = str(cause).rsplit(" failed: ", 1)[-1]
            if reason.startswith("FATAL"):
                return (
                    f"PostgreSQL at {where} refused the connection (DATABASE_URL): "
                    f"{_first_line(reason)}"
                )
            return f"cannot reach PostgreSQL at {where} (DATABASE_URL): {_first_line(reason)}"
        if isinstance(cause, psycopg.errors.InsufficientPrivilege):
            # PostgreSQL 15+ lets only the owner create tables in schema public.
            return (
                f"PostgreSQL at {where}: {_first_line(str(cause))}; the DATABASE_URL user must "
                f"own the database (ALTER DATABASE {settings_dict.get('NAME')} OWNER TO "
                f"{settings_dict.get('USER') or 'that user'})"
            )
        if isinstance(cause, sqlite3.OperationalError) and "unable to open" in str(cause):
            return (
                f"cannot open the SQLite database {settings_dict.get('NAME')} "
                f"(DATABASE_URL, or HUB_VAR_DIR by default): {cause}"
            )
    return None


def _reason(error: BaseException) -> str:
    """Return an error's reason in one line: the system's words for an OS error."""
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
    return _first_line(str(error)) if str(error).strip() else type(error).__name__


def redis_problem(error: BaseException, where: str) -> str:
    """Describe a failed Redis call in one line, naming REDIS_URL (and the CA file for TLS)."""
    text = _reason(error)
    if isinstance(error, AuthenticationError) or (
        isinstance(error, ResponseError) and str(error).startswith(("NOAUTH", "WRONGPASS"))
    ):
        return (
            f"Redis at {where} refused the hub (REDIS_URL): {text}; give the password as "
            "redis://:password@host (or rediss://user:password@host)"
        )
    if "certificate" in str(error).lower() or "ssl" in str(error).lower():
        return f"cannot reach Redis at {where} over TLS (REDIS_URL, HUB_REDIS_CA_FILE): {text}"
    if isinstance(error, RedisError | OSError | TimeoutError):
        return f"cannot reach Redis at {where} (REDIS_URL): {text}"
    return f"Redis at {where} failed (REDIS_URL): {type(error).__name__}: {text}"
