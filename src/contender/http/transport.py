"""uvicorn's HTTP protocol with TCP_NODELAY set on every connection.

With `--workers N` uvicorn hands each worker an already-bound socket, and connections
accepted from it do not get TCP_NODELAY (uvicorn issue 3149): Nagle's algorithm then
holds small responses back for the peer's delayed ACK, about 40 ms per request at
concurrency 1. Setting the option ourselves makes one and N workers behave the same.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
