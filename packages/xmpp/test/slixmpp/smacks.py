"""Stream management (XEP-0198) with slixmpp: resumption after the link drops.

Usage: /usr/bin/python3 smacks.py HOST PORT — prints one JSON line describing what happened.

Juliet connects through a TCP proxy run by this script, enables stream management with
resumption, and then the proxy cuts her connection (both sides reset, no </stream:stream>).
Romeo, connected directly, sends three messages while she is away; she reconnects through the
proxy, resumes the stream, and every message must arrive exactly once, in order.
"""
import asyncio
import json
import logging
import os
import ssl
import sys

import slixmpp

if os.environ.get('SLIX_DEBUG'):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT = sys.argv[1], int(sys.argv[2])


class Proxy:
    """Forwards 127.0.0.1:<port> to the server; cut() resets every connection through it."""

    def __init__(self):
        self.writers = []
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self.handle, '127.0.0.1', 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, down_reader, down_writer):
        up_reader, up_writer = await asyncio.open_connection(HOST, PORT)
        self.writers += [down_writer, up_writer]

        async def pump(reader, writer):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pump(down_reader, up_writer), pump(up_reader, down_writer))

    def cut(self):
        for writer in self.writers:
            writer.transport.abort()
        self.writers = []


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, sm=False):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.bodies = []
        self.got = asyncio.Event()
        self.register_plugin('xep_0030')
        if sm:
            self.register_plugin('xep_0198')
            self.sm_enabled = loop.create_future()
            self.resumed = loop.create_future()
            self.lost = asyncio.Event()
            self.add_event_handler('sm_enabled', lambda _: self.sm_enabled.done() or self.sm_enabled.set_result(True))
            self.add_event_handler('session_resumed', lambda _: self.resumed.done() or self.resumed.set_result(True))
            self.add_event_handler('disconnected', lambda _: self.lost.set())
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)

    def on_message(self, msg):
        if msg['body']:
            self.bodies.append(msg['body'])
            self.got.set()

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))

    async def wait_for(self, body, timeout=20):
        async def loop():
            while body not in self.bodies:
                self.got.clear()
                await self.got.wait()
        await asyncio.wait_for(loop(), timeout)


async def main():
    proxy = Proxy()
    proxy_port = await proxy.start()
    juliet = Client('juliet@localhost/slix', 'balcony', sm=True)
    juliet.connect(address=('127.0.0.1', proxy_port), force_starttls=True)
    await asyncio.wait_for(juliet.ready, 20)
    enabled = await asyncio.wait_for(juliet.sm_enabled, 20)
    romeo = Client('romeo@localhost/slix', 'r0meo!')
    romeo.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(romeo.ready, 20)

    romeo.send_message(mto='juliet@localhost/slix', mbody='before', mtype='chat')
    await juliet.wait_for('before')

    # The link drops: both sides of the proxied connection reset.
    proxy.cut()
    await asyncio.wait_for(juliet.lost.wait(), 20)
    for body in ['during-1', 'during-2', 'during-3']:
        romeo.send_message(mto='juliet@localhost/slix', mbody=body, mtype='chat')
    # A round trip through the server: the three have been routed.
    await romeo['xep_0030'].get_info(jid='localhost', timeout=20)

    juliet.connect(address=('127.0.0.1', proxy_port), force_starttls=True)
    resumed = await asyncio.wait_for(juliet.resumed, 20)
    await juliet.wait_for('during-3')
    romeo.send_message(mto='juliet@localhost/slix', mbody='after', mtype='chat')
    await juliet.wait_for('after')

    result = {'enabled': enabled, 'resumed': resumed, 'bodies': juliet.bodies, 'jid': str(juliet.boundjid)}
    juliet.disconnect()
    romeo.disconnect()
    await asyncio.sleep(0.2)
    print(json.dumps(result))


asyncio.get_event_loop().run_until_complete(main())
