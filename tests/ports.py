"""Free loopback ports for the servers tests start (bound, then released: nothing listens on them)."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n distinct ports, bound together so none repeats, then released."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """One port nothing listens on: connections to it are refused."""
    return free_ports(1)[0]
