"""UDP fork ports whose datagrams carry the time the kernel received them.

A datagram's arrival time is taken from the kernel (``SO_TIMESTAMPNS``, read with
``recvmsg``) where the platform offers it, so ``rtp.received_at`` is when the packet arrived,
not when Python got around to reading it: a datagram read 200 ms late (the interpreter busy
elsewhere) still carries its true arrival time. Elsewhere it is ``time.time_ns()`` when the
read returns. :attr:`ForkPort.clock` says which: ``"kernel"`` or ``"socket_read"``.

The socket is read on the event loop with ``add_reader``: each wake-up drains every queued
datagram (non-blocking ``recvmsg`` until it would block).

Datagrams the kernel dropped because the socket's receive buffer was full (the reader fell
behind a flood) are counted with ``SO_RXQ_OVFL`` on Linux: each datagram carries the socket's
cumulative drop count as of its arrival, so :attr:`ForkPort.kernel_drops` holds the drops up to
the newest datagram read (drops after it show when the next one arrives). ``None`` where the
platform does not report them.
"""

from __future__ import annotations

import asyncio
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ForkPort", "KERNEL", "SOCKET_READ", "kernel_timestamps_available", "kernel_drops_available"]

#: The clocks that stamp ``received_at`` in any table (``Session.clocks``).
KERNEL, SOCKET_READ = "kernel", "socket_read"

# SO_TIMESTAMPNS (= SCM_TIMESTAMPNS) is 35 in Linux's asm-generic socket.h, which these
# architectures use; Python's socket module does not name it. Its control message is a
# struct timespec: two native longs on these 64-bit ABIs.
_SO_TIMESTAMPNS = 35
_GENERIC_ABI = {"x86_64", "aarch64", "arm64", "riscv64"}
_TIMESPEC = struct.Struct("@qq")
# SO_RXQ_OVFL (Linux 2.6.33+, 40 in asm-generic; the socket module names it on few builds): a
# control message with the socket's cumulative count of datagrams dropped, a native uint32.
_SO_RXQ_OVFL: int = getattr(socket, "SO_RXQ_OVFL", 40)
_DROPS = struct.Struct("@I")
_ANCILLARY = (socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_DROPS.size)
              if hasattr(socket, "CMSG_SPACE") else 0)

#: ``on_datagram(data, received_ns, sender)``; ``sender`` is the socket address it came from:
#: ``(host, port)`` for IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6.
OnDatagram = Callable[[bytes, int, tuple[Any, ...]], None]


def kernel_timestamps_available() -> bool:
    """True where this module can ask the kernel for receive timestamps (Linux, generic ABI)."""
    return sys.platform == "linux" and platform.machine() in _GENERIC_ABI and _ANCILLARY > 0


def kernel_drops_available() -> bool:
    """True where this module can ask the kernel to count the datagrams it dropped (Linux, generic ABI)."""
    return kernel_timestamps_available()


class ForkPort:
    """One bound UDP port; ``on_datagram(data, received_ns, sender)`` runs on the loop per datagram.

    ``rcvbuf``: the SO_RCVBUF asked for, in bytes (``rcvbuf`` afterwards holds what the kernel
    granted). ``read_size``: the largest datagram read whole, in bytes. ``clock``: "kernel"
    or "socket_read" (see the module docstring).
    """

    def __init__(self, host: str, port: int, *, on_datagram: OnDatagram, rcvbuf: int, read_size: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((host, port))
            self.clock = SOCKET_READ
            #: Datagrams the kernel dropped on this socket (receive buffer full) up to the newest
            #: one read; None where the platform does not say (see the module docstring).
            self.kernel_drops: int | None = None
            if kernel_timestamps_available():
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    if self._sock.getsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS):
                        self.clock = KERNEL
                except OSError:
                    pass
            if kernel_drops_available():
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
                    if self._sock.getsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL):
                        self.kernel_drops = 0
                except OSError:
                    pass
        except BaseException:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.rcvbuf: int = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._on_datagram = on_datagram
        self._read_size = read_size
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Datagrams the kernel gave no timestamp for (stamped at read instead).
        self.unstamped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading on ``loop``."""
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._drain)

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._loop is not None and self._sock.fileno() != -1:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _drain(self) -> None:
        sock, size, deliver = self._sock, self._read_size, self._on_datagram
        kernel = self.clock == KERNEL
        use_recvmsg = kernel or self.kernel_drops is not None
        while True:
            try:
                if use_recvmsg:
                    data, ancillary, _flags, sender = sock.recvmsg(size, _ANCILLARY)
                else:
                    data, sender = sock.recvfrom(size)
                    ancillary = []
            except (BlockingIOError, InterruptedError):
                return
            except OSError:             # e.g. ICMP errors surfacing on the socket: nothing to read
                return
            ns = 0
            for level, kind, value in ancillary:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    ns = seconds * 1_000_000_000 + nanoseconds
                elif kind == _SO_RXQ_OVFL and len(value) >= _DROPS.size:    # sent only once drops > 0
                    self.kernel_drops = _DROPS.unpack_from(value)[0]
            if not ns:
                ns = time.time_ns()
                self.unstamped += kernel
            deliver(data, ns, sender)
