"""Publishes click records to a NATS JetStream stream, for the README's "Feed entities from a
stream" example: `python publish.py [COUNT] [URL]` (nats-py, pinned in requirements.txt).

Each record is JSON, `{"user": "alice", "amount": 1}`, on subject `events.click`; the stream
`events` (subjects `events.>`) is created when missing. Every publish waits for JetStream's
acknowledgement (the record is stored) in windows of 500.
"""

import asyncio
import json
import sys

import nats
from nats.js.errors import NotFoundError

USERS = ["alice", "bob", "carol", "dave"]


async def main(count: int, url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.stream_info("events")
    except NotFoundError:
        await js.add_stream(name="events", subjects=["events.>"])
    sent = 0
    while sent < count:
        window = min(500, count - sent)
        acks = [
            js.publish(
                "events.click",
                json.dumps({"user": USERS[(sent + i) % len(USERS)], "amount": 1}).encode(),
            )
            for i in range(window)
        ]
        await asyncio.gather(*acks)
        sent += window
    print(f"published {sent} records to stream events")
    await nc.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    u = sys.argv[2] if len(sys.argv) > 2 else "nats://127.0.0.1:4222"
    asyncio.run(main(n, u))
