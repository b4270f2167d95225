# Sequential WebSocket echo round trips (128-byte text), best of 3 runs of N:
# the built-in echo upstream directly, then through the gateway's byte tunnel
# (route /tunnel/) and its terminated framing (route /ws/ with a websocket policy).
# usage: python3 bench/websocket-rtt.py GATEWAY_PORT CA_FILE N ECHO_PORT
# (a gateway config with [[echo]] on ECHO_PORT and both routes; see docs/websocket.md)
import asyncio, ssl, sys, time
from websockets.asyncio.client import connect
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
async def run(url, **kw):
    async with connect(url, ping_interval=None, max_size=None, **kw) as ws:
        for _ in range(200):
            await ws.send('warm'); await ws.recv()
        msg = 'x' * 128
        t = time.perf_counter()
        for _ in range(n):
            await ws.send(msg); await ws.recv()
        return n / (time.perf_counter() - t)
async def main():
    for name, url, kw in [('direct echo (ws://)', f'ws://127.0.0.1:{sys.argv[4]}/', {}),
                          ('byte tunnel (wss://)', f'wss://localhost:{port}/tunnel/', {'ssl': ctx}),
                          ('terminated (wss://)', f'wss://localhost:{port}/ws/', {'ssl': ctx})]:
        best = max([await run(url, **kw) for _ in range(3)])
        print(f'{name:24s} {best:8.0f} round trips/s')
asyncio.run(main())
