"""A TCP proxy on 127.0.0.1 that a test can cut: the network between Keel and PostgreSQL.

``Proxy(target_port)`` forwards every connection to ``127.0.0.1:target_port``. ``cut()``
resets every open connection and refuses new ones (closed at once) until ``restore()``:
to Keel, PostgreSQL is unreachable, as behind a failed switch, while the server itself
(shared with other tests) goes on untouched.
"""

from __future__ import annotations

import socket
import struct
import threading
from contextlib import suppress

__all__ = ["Proxy"]


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self._down = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)

    def cut(self) -> None:
        """PostgreSQL unreachable: every connection reset, new ones refused."""
        self._down = True
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for s in sockets:
            _reset(s)

    def restore(self) -> None:
        self._down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with suppress(OSError):
            self._listener.close()


def _reset(s: socket.socket) -> None:
    with suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    with suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv (a bare close would not)
    with suppress(OSError):
        s.close()
