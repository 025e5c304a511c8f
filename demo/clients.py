"""Who sent a request, and whether they may send more: the client's address behind the Space's proxy,
and each client's share of the queue."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from mdsr.serving import Limits, RefusedError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies(environ: os._Environ | dict = os.environ) -> tuple[IpNetwork, ...]:
    """The proxies whose X-Forwarded-For entries are believed: ``MDSR_TRUSTED_PROXIES`` (comma-separated
    addresses or networks); on a Hugging Face Space (``SPACE_ID`` set), where every request comes through
    the Space's proxy, its private and loopback networks by default; elsewhere none."""
    configured = environ.get("MDSR_TRUSTED_PROXIES")
    if configured is None and environ.get("SPACE_ID"):
        configured = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,::1/128,fc00::/7"
    networks = []
    for item in (configured or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as err:
                raise ValueError(f"MDSR_TRUSTED_PROXIES: {item.strip()!r} is not an address or network") from err
    return tuple(networks)


def client_address(peer: str, forwarded_for: str, trusted: Iterable[IpNetwork]) -> str:
    """The address a request is counted against. A peer that is not a trusted proxy is the client, whatever
    headers it sends. Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the
    address it received from), skipping trusted proxies: the first other address is the client."""
    trusted = tuple(trusted)

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not is_trusted(peer):
        return peer
    hops = [a.strip() for a in forwarded_for.split(",") if a.strip()]
    for address in reversed(hops):
        if not is_trusted(address):
            return address
    return hops[0] if hops else peer


def check_share(client_jobs: int, all_jobs: int, limits: Limits) -> None:
    """A new request from a client with ``client_jobs`` waiting or running, ``all_jobs`` in all."""
    if client_jobs >= limits.jobs_per_client:
        raise RefusedError(
            f"you already have {limits.jobs_per_client} requests waiting or running; wait for one to finish"
        )
    if all_jobs >= limits.jobs:
        raise RefusedError(f"the demo is busy ({limits.jobs} requests waiting or running); try again in a minute")
