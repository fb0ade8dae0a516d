"""Who can reach the app, and what a visitor may then make the server do.

An endpoint typed into the settings panel is dialled by the server. On a deployment that others can reach,
that would let a visitor make the server send requests to its own loopback, its private network or a
cloud metadata address, so such an endpoint is checked as a page fetch is: with the tools' address guard
(agent.tools.http.AddressGuard), which refuses private, loopback, link-local (metadata), multicast and
reserved addresses. The check resolves the name when the episode starts; the model client then connects
by name, so a name that answers differently a moment later (DNS rebinding) is not caught here, as it is
for page fetches. Locking the settings (the default on public deployments, ui.settings) closes that too.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

from agent.tools.http import AddressGuard, BlockedAddressError, ToolError
from ui.errors import UserFacingError


def loopback_only(host: str) -> bool:
    """Whether listening on `host` keeps the app reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False  # a host name: it names some interface of this machine, and others may reach that


def check_visitor_endpoint(url: str, what: str) -> None:
    """Raise UserFacingError unless `url` is an http(s) URL whose host resolves only to public addresses.
    Blocks while the name resolves: call it from a worker thread."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserFacingError(f"The {what} must be an http(s) URL such as https://HOST/v1.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UserFacingError(f"The {what} {url} has an invalid port.") from None
    try:
        asyncio.run(AddressGuard().resolve(parts.hostname, port))
    except BlockedAddressError:
        raise UserFacingError(
            f"The {what} {url} points to a private, loopback or link-local address, which visitors of a public "
            "deployment may not use. Use a public endpoint, or ask whoever runs the app to start it with this one."
        ) from None
    except ToolError as exc:
        raise UserFacingError(f"The {what} {url} cannot be used: {exc.reason}.") from None
