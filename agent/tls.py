"""One verified TLS context for every HTTP client of the process.

Building a context loads the CA bundle, which costs tens of milliseconds of CPU; the app builds a model
client for every endpoint a visitor types in and a tool client per provider per configuration, so under
load the bundle would be parsed again and again. An `ssl.SSLContext` is safe to share between clients.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default verified context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR when set), built once."""
    return httpx.create_ssl_context()
