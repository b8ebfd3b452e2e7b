"""The container's terminal: a pty made inside the container, its master sent over a socket.

As runc does, the pty is opened from the container's own devpts (after pivot_root),
its slave becomes the init's controlling terminal and /dev/console, and the master
is passed with SCM_RIGHTS over the `--console-socket` to whoever holds the terminal.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import termios

from lowrun import syscalls
from lowrun.errors import LowrunError

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def open_pty() -> tuple[int, str]:
    """Open a new pty pair from /dev/ptmx; return the master fd and the slave's path."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    return master, f"/dev/pts/{number}"


def mount_console(slave_path: str) -> None:
    """Bind the pty slave on /dev/console, creating the mount point if needed."""
    if not os.path.exists("/dev/console"):
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    syscalls.mount(slave_path, "/dev/console", None, syscalls.MS_BIND)


def become_terminal(slave_path: str) -> None:
    """Make the slave the controlling terminal and the stdio of this (session leader) process."""
    slave = os.open(slave_path, os.O_RDWR)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def connect(socket_path: str) -> _socket.socket:
    """Connect to the console socket while its path is still visible (before pivot_root)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise LowrunError(f"console socket {socket_path}: {exc.strerror}") from None
    return sock


def send_fd(sock: _socket.socket, fd: int, name: str = "/dev/ptmx") -> None:
    """Send `fd` with SCM_RIGHTS on a connected socket, then close the socket."""
    try:
        rights = struct.pack("i", fd)
        sock.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    finally:
        sock.close()


def recv_fd(sock: _socket.socket) -> int:
    """Receive one fd sent with SCM_RIGHTS (the other side of `send_fd`)."""
    size = struct.calcsize("i")
    _, ancdata, _, _ = sock.recvmsg(4096, _socket.CMSG_SPACE(size))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= size:
            fd: int = struct.unpack("i", data[:size])[0]
            return fd
    raise LowrunError("no file descriptor received on the console socket")


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
