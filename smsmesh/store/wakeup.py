"""Cross-process wake-ups for `Store.wait_for_work`, over Unix datagram sockets.

SQLite has no LISTEN/NOTIFY, and polling the database from every connector process
would burn CPU and add latency. Instead a process that waits for work on a
connection binds a datagram socket at `<db path>.wake/<connection>.sock`; a writer
that has just committed work for a connection sends it one byte. Datagram sockets
need no connection set-up, never block the sender (a full queue already means the
listener has wake-ups pending) and vanish with the listener, so a missing or stale
socket simply means "nobody to wake" and is ignored. Wake-ups are hints: the waiter
always claims afterwards, and its timeout is the safety net for a lost datagram.

Exactly one connector serves a connection (the operator guarantees it), so a new
listener takes over a stale socket path left by a crashed predecessor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_SAFE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")
# Errors that only mean "nobody is listening" or "the listener is already woken".
_IGNORED_SEND_ERRORS = frozenset(
    {errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOTDIR, errno.ENOBUFS}
)


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def socket_path(directory: Path, connection: str) -> str:
    """Where the listener for `connection` binds; every process computes the same path.

    Connection names are DNS-1123 names and used as they are; anything else is hashed
    so that no name can escape the directory. When the path would not fit in a
    sockaddr_un, a directory under /tmp named after a hash of `directory` is used.
    """
    name = connection if _SAFE_NAME.fullmatch(connection) else "h-" + _digest(connection, 32)
    path = os.path.join(os.fspath(directory), f"{name}.sock")
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    short = os.path.join("/tmp", f"smsmesh-wake-{_digest(os.fspath(directory), 16)}")
    return os.path.join(short, f"{_digest(connection, 24)}.sock")


class WakeupSender:
    """Sends wake-ups; safe to use from one thread at a time (the store's DB thread)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sock: socket.socket | None = None

    def notify(self, connections: Iterable[str]) -> None:
        """Send one datagram to each connection's listener; never blocks, never raises."""
        for connection in set(connections):
            path = socket_path(self._directory, connection)
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(b"\x01", path)
            except OSError as exc:
                if exc.errno not in _IGNORED_SEND_ERRORS:
                    log.debug("wake-up for %s not sent: %s", connection, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _Listener:
    """One bound socket and the event its datagrams set."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.event = asyncio.Event()
        self._loop = loop
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            self._take_over(path)
            self._inode = os.stat(path).st_ino
            loop.add_reader(self._sock.fileno(), self._on_readable)
        except BaseException:
            self._sock.close()
            raise

    def _take_over(self, path: str, attempts: int = 5) -> None:
        """Bind `path`, replacing whatever socket file is there (a crashed predecessor's).

        Two processes starting together may both unlink and then both bind: the loser
        sees EADDRINUSE and takes over again; the last to bind gets the wake-ups.
        """
        for attempt in range(attempts):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            try:
                self._sock.bind(path)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise

    def _on_readable(self) -> None:
        # Drain everything queued: many commits between two waits are one wake-up.
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # unexpected; do not spin on it
                log.debug("wake-up socket %s: %s", self.path, exc)
                break
        self.event.set()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        # Unlink only our own socket, not one a successor has bound since.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)


class WakeupListeners:
    """The sockets one store binds to wait for work; used from the event loop only."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._listeners: dict[str, _Listener] = {}

    def listen(self, connection: str) -> bool:
        """Bind the socket for `connection` unless bound already; True if it was bound now."""
        if connection in self._listeners:
            return False
        loop = asyncio.get_running_loop()
        path = socket_path(self._directory, connection)
        self._listeners[connection] = _Listener(path, loop)
        return True

    async def wait(self, connection: str, max_wait: float) -> bool:
        """True when a wake-up arrived (or the socket was only just bound), else False.

        A socket bound by this very call may have missed a notification sent just
        before, so that first call answers True at once and the caller claims again.
        """
        if self.listen(connection):
            return True
        listener = self._listeners[connection]
        if not listener.event.is_set():
            try:
                async with asyncio.timeout(max(0.0, max_wait)):
                    await listener.event.wait()
            except TimeoutError:
                return False
        listener.event.clear()
        return True

    def close(self) -> None:
        for listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
