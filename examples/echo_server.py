"""A forking TCP echo server that reaps its children, built on undertaker.

The classic server from the zombie tutorials: one ``fork`` per connection.
Without reaping, every finished connection leaves a zombie. Here a
threadless ``Reaper`` installs a SIGCHLD handler and each connection's child
is handed to it with ``manage()``, so children are reaped as they exit and
nothing else in the program can lose a status to it.

    python examples/echo_server.py --port 0 --connections 100   # prints the port
    python examples/echo_server.py --no-reap ...                # leaves zombies

After serving *connections* clients it prints ``served N`` and waits for EOF on
stdin before exiting, so a test can count zombies while it is still alive.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from undertaker import Reaper


def handle(connection: socket.socket) -> None:
    """Echo until the client closes; runs in the forked child."""
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)


def serve(listener: socket.socket, connections: int, reaper: Reaper | None) -> None:
    """Accept *connections* clients, one forked child each."""
    for _ in range(connections):
        connection, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the child has no children
            try:
                handle(connection)
            finally:
                os._exit(0)
        connection.close()
        if reaper is not None:
            reaper.manage(pid)  # ours alone: no other code waits for it


def main(argv: list[str] | None = None) -> int:
    """Parse options, listen on loopback, serve, then wait for EOF on stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--no-reap", action="store_true", help="negative control: never wait")
    args = parser.parse_args(argv)
    with socket.create_server(("127.0.0.1", args.port), backlog=128) as listener:
        print(listener.getsockname()[1], flush=True)
        if args.no_reap:
            serve(listener, args.connections, None)
        else:
            # Threadless: reaping runs in our SIGCHLD handler, and fork() stays
            # safe because this process has a single thread.
            with Reaper(orphans=False, thread=False, sigchld=True) as reaper:
                serve(listener, args.connections, reaper)
                print(f"served {args.connections}", flush=True)
                sys.stdin.read()
            return 0
        print(f"served {args.connections}", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
