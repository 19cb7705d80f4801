"""A small TCP proxy for sdk_failover.rs (run as a script, never collected by pytest).

    python proxy.py LISTEN_PORT TARGET1 [TARGET2 ...] [--state FILE]

Each new connection goes to the first target (host:port) that accepts it, tried in order; an
established connection is closed (both sides) when either side closes, so when its target dies
the client sees its connection drop and reconnects, landing on the next target that accepts.
With --state FILE, the number of open connections per target is written to FILE (JSON, replaced
atomically) on every change, so the test knows which node the clients are on.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

args = sys.argv[1:]
STATE = None
if "--state" in args:
    i = args.index("--state")
    STATE = args[i + 1]
    del args[i:i + 2]
LISTEN_PORT = int(args[0])
TARGETS = args[1:]
open_conns: dict[str, int] = {t: 0 for t in TARGETS}
counter = 0


def log(msg: str) -> None:
    print(f"{time.time():.3f} proxy:{LISTEN_PORT} {msg}", flush=True)


def write_state() -> None:
    if STATE is None:
        return
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(open_conns, f)
    os.replace(tmp, STATE)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass


async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    global counter
    counter += 1
    n = counter
    for target in TARGETS:
        host, port = target.rsplit(":", 1)
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, asyncio.TimeoutError):
            continue
        break
    else:
        log(f"conn {n}: no target accepts, closing")
        client_w.close()
        return
    open_conns[target] += 1
    write_state()
    log(f"conn {n} -> {target}")
    a = asyncio.ensure_future(pipe(client_r, up_w))
    b = asyncio.ensure_future(pipe(up_r, client_w))
    # the first side to end (the target died, or the client went away) ends both
    await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
    for t in (a, b):
        t.cancel()
    for w in (up_w, client_w):
        try:
            w.close()
        except Exception:
            pass
    open_conns[target] -= 1
    write_state()
    log(f"conn {n} -> {target} closed")


async def main() -> None:
    write_state()
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN_PORT)
    log(f"listening, targets {TARGETS}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
