"""recvmmsg and sendmmsg (Linux): a batch of UDP datagrams per system call, each way.

One call for the whole batch each way, instead of a recvfrom and a sendto per datagram:
fewer system calls, and no address turned into a string and back per datagram (the
sender's raw sockaddr goes back out as it came in). Python's socket module has neither
call, so they are called through ctypes, with the GIL held (PyDLL): the socket is
non-blocking, so neither call waits. The structures are Linux's (64-bit, little-endian;
musl's padded int fields read the same there); `CALLS` is None anywhere else, and the
UDP server then uses recvfrom and sendto (kdns.wire.udp).

The calls have no `argtypes`: ctypes would convert every argument through its type's
`from_param` at every call, which cost more instructions than the rest of a wake-up's
Python (about 6,650 a call of the 34,900 a one-datagram wake-up took, callgrind). Without
them, a Python int goes as a C int (the descriptor, the count and the flags are ints) and
a pointer as a `byref` made once per buffer (`Batch`), which ctypes passes as it is, so
each argument's C type is still the prototype's.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

from kdns.hostport import Peer

__all__ = ["CALLS", "Batch"]

log = logging.getLogger("kdns.wire.udp")  # its messages are the UDP server's


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint32)]


def _batch_calls() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libc's (recvmmsg, sendmmsg), or None where kdns does not use them."""
    if not (sys.platform == "linux" and sys.byteorder == "little" and ctypes.sizeof(ctypes.c_void_p) == 8):
        return None
    try:
        # A library object of kdns's own: the functions' settings below are not shared.
        libc = ctypes.PyDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    # int recvmmsg(int, struct mmsghdr *, unsigned int, int, struct timespec *) and
    # int sendmmsg(int, struct mmsghdr *, unsigned int, int): called with ints, byrefs
    # and None only (see the module's docstring), so no argtypes.
    recvmmsg.restype = sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


CALLS = _batch_calls()
_NAME_SIZE = 28  # sizeof(struct sockaddr_in6), the largest address a UDP socket reports
# Where the fields read and written per datagram are, in units of their own size.
_HEADER_SIZE = ctypes.sizeof(_MMsgHdr)
_HEADER_INTS = _HEADER_SIZE // 4
_HEADER_WORDS = _HEADER_SIZE // 8
_IOVEC_WORDS = ctypes.sizeof(_IoVec) // 8
_LENGTH = _MMsgHdr.msg_len.offset // 4
_NAME_LENGTH = _MsgHdr.msg_namelen.offset // 4
_NAME = _MsgHdr.msg_name.offset // 8
_IOV_BASE = _IoVec.iov_base.offset // 8
_IOV_LEN = _IoVec.iov_len.offset // 8
_MAX_PEERS = 4096


def _words(array: ctypes.Array[Any], code: Literal["I", "Q"]) -> memoryview:
    """A ctypes array's memory as integers of one size."""
    return memoryview(array).cast("B").cast(code)


def _address_of(buffer: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


class Batch:
    """The buffers for `size` datagrams each way on one socket, and the calls that use them.

    Datagram i is read into its slot, at i * slot of one private mapping (`receive_size`
    rounded up to whole pages, at least the largest datagram there is; pages the kernel
    never writes to are never allocated), its sender's sockaddr into `_names`. Its reply
    is written over it, in the same slot: a reply is sent before the next `receive`, and
    the request's ID is where the reply's goes. `receive` reads datagrams and their
    senders; `queue` writes a reply and points the next free out header at it and at the
    asker's sockaddr, as it came in; `queue_ready` does that for a whole batch of ready
    replies; `flush` sends what was queued.
    """

    def __init__(self, fd: int, size: int, receive_size: int) -> None:
        if CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg and sendmmsg are not used on this platform")
        self._recvmmsg, self._sendmmsg = CALLS
        self._fd = fd
        self._size = size
        self._slot = slot = -(-receive_size // mmap.PAGESIZE) * mmap.PAGESIZE
        # Private mappings: a process forked later must not share them.
        self._buffer = mmap.mmap(-1, size * slot, flags=mmap.MAP_PRIVATE)
        self._names = mmap.mmap(-1, size * _NAME_SIZE, flags=mmap.MAP_PRIVATE)
        names_at, buffer_at = _address_of(self._names), _address_of(self._buffer)
        self._in, self._out = (_MMsgHdr * size)(), (_MMsgHdr * size)()
        in_vectors, out_vectors = (_IoVec * size)(), (_IoVec * size)()
        # Out header i starts pointed at slot i and sockaddr i, as in header i is: while every
        # datagram of a batch so far has a ready reply, the reply queued i-th is datagram
        # i's, and only its length is written.
        for i in range(size):
            for vectors in (in_vectors, out_vectors):
                vectors[i].iov_base, vectors[i].iov_len = buffer_at + i * slot, receive_size
            for header, vectors in ((self._in[i].msg_hdr, in_vectors), (self._out[i].msg_hdr, out_vectors)):
                header.msg_iov, header.msg_iovlen = ctypes.addressof(vectors[i]), 1
                header.msg_namelen = _NAME_SIZE
                header.msg_name = names_at + i * _NAME_SIZE
        self._vectors = (in_vectors, out_vectors)  # the headers point into them
        # The calls' pointer arguments, made once (CALLS have no argtypes).
        self._in_pointer, self._out_pointer = ctypes.byref(self._in), ctypes.byref(self._out)
        # recvmmsg writes each header's msg_namelen (and msg_len, msg_flags): reset per call.
        self._in_bytes = memoryview(self._in).cast("B")
        self._in_blank = bytes(self._in_bytes)
        # A reply queued out of its datagram's place moves an out header: put back before
        # the next batch (`_moved`).
        self._out_bytes = (memoryview(self._out).cast("B"), memoryview(out_vectors).cast("B"))
        self._out_blank = tuple(bytes(table) for table in self._out_bytes)
        self._moved = False
        in_ints, out_words, out_vector_words = _words(self._in, "I"), _words(self._out, "Q"), _words(out_vectors, "Q")
        self._name_lengths = in_ints[_NAME_LENGTH::_HEADER_INTS]
        # Tables of what `queue` and `queue_ready` read and write, by datagram: its slot's
        # offset, its length, its slot's and its sockaddr's addresses; and by queued reply:
        # its length, its address and its asker's sockaddr's, as the out headers hold them.
        self._offsets = range(0, size * slot, slot)
        self._lengths = in_ints[_LENGTH::_HEADER_INTS]
        self._addresses = range(buffer_at, buffer_at + size * slot, slot)
        self._name_addresses = range(names_at, names_at + size * _NAME_SIZE, _NAME_SIZE)
        self._reply_lengths = out_vector_words[_IOV_LEN::_IOVEC_WORDS]
        self._reply_addresses = out_vector_words[_IOV_BASE::_IOVEC_WORDS]
        self._reply_names = out_words[_NAME::_HEADER_WORDS]
        self._queued = 0
        # Senders' addresses as recvfrom gives them, by raw sockaddr: few clients ask a lot.
        self._peers: dict[bytes, Peer] = {}

    def receive(self) -> int:
        """Read up to `size` datagrams; how many (0: none was waiting)."""
        self._queued = 0  # (replies a failed batch left queued would go to the wrong askers)
        self._in_bytes[:] = self._in_blank
        if self._moved:
            for table, blank in zip(self._out_bytes, self._out_blank, strict=True):
                table[:] = blank
            self._moved = False
        count = self._recvmmsg(self._fd, self._in_pointer, self._size, socket.MSG_DONTWAIT, None)
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        return count

    def datagram(self, i: int) -> bytes:
        """Datagram i of those `receive` read (before a reply to it is queued)."""
        start = self._offsets[i]
        return self._buffer[start : start + self._lengths[i]]

    def peer(self, i: int) -> Peer:
        """The sender of datagram i, as recvfrom gives it: (host, port), or (host, port, flowinfo, scope_id)."""
        start = i * _NAME_SIZE
        name = self._names[start : start + self._name_lengths[i]]
        peer = self._peers.get(name)
        return peer if peer is not None else self._peer(name)

    def queue(self, i: int, reply: bytes) -> None:
        """Queue `reply` to the sender of datagram i (whose bytes it replaces)."""
        start, queued = self._offsets[i], self._queued
        self._buffer[start : start + len(reply)] = reply
        self._moved = self._moved or queued != i
        self._reply_lengths[queued] = len(reply)
        self._reply_addresses[queued] = self._addresses[i]
        self._reply_names[queued] = self._name_addresses[i]
        self._queued = queued + 1

    def queue_ready(
        self,
        count: int,
        plain: Mapping[bytes, bytes],
        counts: list[int],
        other: Callable[[bytes], bytes | bytearray | None],
    ) -> list[int]:
        """For each of the `count` datagrams read, queue the reply there is for it; the
        datagrams there is none for.

        A datagram's bytes after its ID are looked up in `plain`: a reply found there is
        its bytes after the ID followed by one byte, the index in `counts` of the counter
        that one is added to. Else `other` is given them and returns the reply's bytes
        after the ID, or None. Either way the reply is written after the ID in place.
        This loop is most of what a ready reply costs in Python, so it keeps its state in
        locals, reads the offsets from tables made once, and for a plain reply calls
        nothing but the dict lookup. (The counter's byte is written after the reply, in
        the slot, and not sent.)
        """
        buffer, reply_lengths, queued, get = self._buffer, self._reply_lengths, self._queued, plain.get
        others = []
        # (range(count) is the shortest: the tables are as long as the batch. No `strict=`:
        # a keyword argument sends zip's construction down the slow path.)
        for i, start, size in zip(range(count), self._offsets, self._lengths):  # noqa: B905
            key = buffer[start + 2 : start + size]
            body = get(key)
            if body is not None:
                counts[body[-1]] += 1
                size = len(body) + 1  # noqa: PLW2901  (the reply's, from here on)
                buffer[start + 2 : start + size + 1] = body
            else:
                reply = other(key)
                if reply is None:
                    others.append(i)
                    continue
                size = len(reply) + 2  # noqa: PLW2901
                buffer[start + 2 : start + size] = reply
            if queued != i:  # (a datagram before it had none: out header `queued` is moved)
                self._reply_addresses[queued] = self._addresses[i]
                self._reply_names[queued] = self._name_addresses[i]
            reply_lengths[queued] = size
            queued += 1
        self._queued = queued
        self._moved = self._moved or bool(others)
        return others

    def flush(self) -> int:
        """Send the queued replies; how many were dropped for want of buffer space."""
        count, self._queued = self._queued, 0
        sent = 0
        while sent < count:
            at = self._out_pointer if not sent else ctypes.byref(self._out, sent * _HEADER_SIZE)
            done = self._sendmmsg(self._fd, at, count - sent, 0)
            if done <= 0:
                # sendmmsg stops at the first reply it cannot send, and says why only if
                # that is the first one: then that one is lost, and the rest go on.
                code = ctypes.get_errno()
                if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return count - sent
                log.debug("udp: cannot answer: %s", os.strerror(code))
                done = 1
            sent += done
        return 0

    def _peer(self, name: bytes) -> Peer:
        """A raw sockaddr as recvfrom gives it: (host, port), or (host, port, flowinfo, scope_id)."""
        port = int.from_bytes(name[2:4], "big")
        if int.from_bytes(name[:2], sys.byteorder) == socket.AF_INET6:
            host = socket.inet_ntop(socket.AF_INET6, name[8:24])
            flowinfo, scope_id = int.from_bytes(name[4:8], "big"), int.from_bytes(name[24:28], sys.byteorder)
            peer: Peer = (host, port, flowinfo, scope_id)
        else:
            peer = (socket.inet_ntop(socket.AF_INET, name[4:8]), port)
        if len(self._peers) >= _MAX_PEERS:
            self._peers.clear()
        self._peers[name] = peer
        return peer
