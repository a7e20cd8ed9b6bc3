"""Run the simulator on uvicorn in a background thread, for tests, benchmarks and `jumpsync simulator`.

The listening socket is bound before the thread starts, so `.url` is known (also with port 0, which picks a
free port) and a client can connect as soon as `start()` returns.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn

from simulator.app import create_app
from simulator.inject import quiet_simulated_drops
from simulator.state import SimulatorState


class SimulatorServer:
    def __init__(self, state: SimulatorState, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.state = state
        self.host = host
        self.port = port
        self.app = create_app(state)
        self._config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, access_log=False,
                                      lifespan="off", timeout_keep_alive=30)
        quiet_simulated_drops()  # after uvicorn.Config, which (re)configures uvicorn's loggers
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the simulator is not started (no port yet)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> socket.socket:
        """Bind the listening socket (port 0 picks a free one) and remember the port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
        # without it a small response can wait for the client's delayed ACK (Nagle's algorithm).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._socket = sock
        return sock

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Start serving in a daemon thread; returns once uvicorn accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        sock = self.bind()
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not start")
            time.sleep(0.005)
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until interrupted (Ctrl+C), for the CLI. `on_ready(url)` is called once
        the socket is bound (so a port of 0 is resolved)."""
        sock = self.bind()
        if on_ready is not None:
            on_ready(self.url)
        self._server = uvicorn.Server(self._config)
        try:
            self._server.run(sockets=[sock])
        finally:
            sock.close()
            self._socket = None

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None

    def __enter__(self) -> SimulatorServer:
        """Starts the server unless `start()` was already called."""
        return self if self._thread is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
