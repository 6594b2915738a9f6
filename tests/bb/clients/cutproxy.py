"""A loopback TCP proxy that drops connections like a network change.

Clients connect to CutProxy.port; each connection gets its own
upstream connection to the server.  Bytes are forwarded both ways
until:

- blackhole(): from now on bytes are read from both sides and thrown
  away, as packets lost on a dead radio link: the server's writes
  succeed, nothing reaches the client, and the other way round;
- cut(): every connection is reset (RST) on both sides at once.

place(worker) makes the next upstream connection land on the given
xmppd worker (SO_REUSEPORT spreads connections by a hash of the
address pair, so the proxy connects until one lands there, counting
connections per worker with xmppctl status), to force a resumption on
the same or on another worker.  Every wait is bounded.
"""
import asyncio
import socket
import struct
import time


class CutProxy:
    def __init__(self, upstream_port, server=None):
        self.upstream_port = upstream_port
        self.server = server          # harness.Server, for place()
        self.pairs = []               # [(client_writer, upstream_writer)]
        self.holes = False
        self.discarded = {"down": 0, "up": 0}
        self.forwarded = {"down": 0, "up": 0}
        self.next_worker = None
        self.placed_on = []           # worker index of each connection
        self.srv = None
        self.port = None

    async def start(self):
        self.srv = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def close(self):
        self.cut()
        if self.srv is not None:
            self.srv.close()
            await self.srv.wait_closed()

    def place(self, worker):
        self.next_worker = worker

    def blackhole(self):
        self.holes = True

    def restore(self):
        self.holes = False

    def cut(self):
        """Reset every connection on both sides (SO_LINGER 0: RST)."""
        for pair in self.pairs:
            for w in pair:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                w.transport.abort()
        self.pairs = []

    async def _connect_on(self, worker):
        """An upstream connection accepted by that worker."""
        loop = asyncio.get_running_loop()

        def counts():
            st = self.server.status()
            return [w["connections"] for w in st["workers"]] if st else None

        for _ in range(40):
            before = await loop.run_in_executor(None, counts)
            r, w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            deadline = time.monotonic() + 5
            landed = None
            while landed is None and time.monotonic() < deadline:
                now = await loop.run_in_executor(None, counts)
                if now and before and len(now) == len(before):
                    up = [i for i in range(len(now)) if now[i] > before[i]]
                    if len(up) == 1:
                        landed = up[0]
                        break
                await asyncio.sleep(0.02)
            if landed == worker:
                return r, w
            w.transport.abort()
            await asyncio.sleep(0.1)
        raise AssertionError("proxy: could not place a connection on worker %d"
                             % worker)

    async def _accept(self, creader, cwriter):
        worker, self.next_worker = self.next_worker, None
        try:
            if worker is None or self.server is None:
                ureader, uwriter = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port)
            else:
                ureader, uwriter = await self._connect_on(worker)
        except Exception:
            cwriter.transport.abort()
            raise
        self.placed_on.append(worker)
        self.pairs.append((cwriter, uwriter))
        await asyncio.gather(self._pump(creader, uwriter, "up"),
                             self._pump(ureader, cwriter, "down"),
                             return_exceptions=True)

    async def _pump(self, reader, writer, direction):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.holes:
                    self.discarded[direction] += len(data)
                    continue
                self.forwarded[direction] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # a close on one side closes the other (unless cut() reset both)
            try:
                writer.close()
            except Exception:
                pass
