"""Free loopback ports for the servers tests start (bound, then released: nothing listens on them); the one helper,
shared with the benchmarks' stacks."""

from __future__ import annotations

from bench.fault_stack import free_ports

__all__ = ["free_port", "free_ports"]


def free_port() -> int:
    """One port nothing listens on: connections to it are refused."""
    return free_ports(1)[0]
