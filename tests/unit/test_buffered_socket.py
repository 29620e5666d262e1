"""BufferedSocket: paho's small reads served from one large read, pending() and EOF as a socket's."""

from __future__ import annotations

import socket

import pytest

from emon_core.adapters.mqtt import BufferedSocket


def test_small_reads_come_from_one_recv_and_pending_counts_the_rest() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        buf = BufferedSocket(b)
        with pytest.raises(BlockingIOError):  # nothing there yet: as the plain socket
            buf.recv(1)
        a.sendall(b"\x30\x05hello\x40\x02xy")
        assert buf.recv(1) == b"\x30"
        assert buf.pending() == 10  # the rest already read from the kernel
        assert buf.recv(1) == b"\x05"
        assert buf.recv(5) == b"hello"
        assert buf.recv(100) == b"\x40\x02xy"  # never more than is buffered
        assert buf.pending() == 0
        a.close()
        assert buf.recv(1) == b""  # EOF as the socket reports it
    finally:
        b.close()


def test_other_socket_methods_are_the_sockets() -> None:
    a, b = socket.socketpair()
    try:
        buf = BufferedSocket(b)
        assert buf.fileno() == b.fileno()
        buf.send(b"x")
        assert a.recv(1) == b"x"
    finally:
        a.close()
        b.close()


def test_coalesced_writes_leave_in_one_send_at_flush_or_close() -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        buf = BufferedSocket(b, coalesce_writes=True)
        assert buf.send(b"\x40\x02\x00\x01") == 4  # paho sees every PUBACK written
        assert buf.send(b"\x40\x02\x00\x02") == 4
        with pytest.raises(BlockingIOError):  # nothing on the wire before the flush
            a.recv(100)
        assert buf.flush() == 0
        assert a.recv(100) == b"\x40\x02\x00\x01\x40\x02\x00\x02"
        buf.send(b"\xe0\x00")  # paho writes DISCONNECT, then closes the socket at once
        buf.close()
        a.setblocking(True)
        assert a.recv(100) == b"\xe0\x00"
        assert a.recv(100) == b""
    finally:
        a.close()
