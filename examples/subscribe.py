"""Minimal wavlm-live subscriber: print final captions with speaker labels.

    python examples/subscribe.py ws://127.0.0.1:8765 [--token TOKEN]

Needs only the ``websockets`` package; see docs/protocol.md for every message.
(``wavlm-live listen URL`` is the fuller client: partial captions, renames, errors.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def subscribe(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else None  # never in the URL
    names: dict[str, str | None] = {}
    async with connect(url, additional_headers=headers, compression=None) as ws:
        # hello and the snapshot arrive first; then choose what to receive
        await ws.send(json.dumps({"type": "subscribe", "topics": ["caption", "speaker", "end"]}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "speaker":
                names[msg["id"]] = msg["name"]
            elif msg["type"] == "caption" and msg["final"] and msg["text"]:
                who = msg["speaker"]
                label = f"{who} ({names[who]})" if names.get(who) else who or "?"
                print(f"[{msg['start']:.2f}-{msg['end']:.2f}] {label}: {msg['text']}", flush=True)
            elif msg["type"] == "end":
                print(f"stream ended at {msg['t']:.2f} s")
                return 0
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="server URL, e.g. ws://127.0.0.1:8765")
    parser.add_argument("--token", help="bearer token, if the server requires one")
    args = parser.parse_args()
    try:
        return asyncio.run(subscribe(args.url, args.token))
    except InvalidStatus as exc:
        print(f"server refused the connection: HTTP {exc.response.status_code}", file=sys.stderr)
    except OSError as exc:
        print(f"cannot connect to {args.url}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
