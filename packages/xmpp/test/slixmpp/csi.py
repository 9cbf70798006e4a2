"""Client State Indication (XEP-0352) with slixmpp's xep_0352.

Usage: /usr/bin/python3 csi.py HOST PORT — prints one JSON line describing what happened.

Juliet goes inactive; Romeo sends her two presence updates (directed to her resource), which the
server holds; a ping round trip shows nothing arrived; then Romeo's message arrives right after
the latest of the two updates (the first one was superseded).
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


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.seen = []
        self.got = asyncio.Event()
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0199')
        self.register_plugin('xep_0352')
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('presence_available', self.on_presence)

    def on_message(self, msg):
        if msg['body']:
            self.seen.append('message:' + msg['body'])
            self.got.set()

    def on_presence(self, presence):
        if presence['from'].bare == 'romeo@localhost':
            self.seen.append('presence:' + presence['status'])
            self.got.set()

    async def on_start(self, _event):
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))


async def online(jid, password):
    client = Client(jid, password)
    client.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(client.ready, 20)
    return client


async def main():
    juliet = await online('juliet@localhost/slix', 'balcony')
    romeo = await online('romeo@localhost/slix', 'r0meo!')
    result = {'csi': juliet['xep_0352'].enabled}
    juliet['xep_0352'].send_inactive()
    # The server handled <inactive/> before this round trip's answer.
    await juliet['xep_0199'].ping(jid='localhost', timeout=20)

    for status in ['first', 'latest']:
        romeo.send_presence(pto='juliet@localhost/slix', pstatus=status)
    # Routed once Romeo's round trip is done; a ping by Juliet would flush them (IQ results go out at once).
    await romeo['xep_0199'].ping(jid='localhost', timeout=20)
    await asyncio.sleep(0.2)
    result['whileInactive'] = list(juliet.seen)

    romeo.send_message(mto='juliet@localhost/slix', mbody='hello', mtype='chat')

    async def until_message():
        while 'message:hello' not in juliet.seen:
            juliet.got.clear()
            await juliet.got.wait()
    await asyncio.wait_for(until_message(), 20)
    result['afterMessage'] = list(juliet.seen)

    juliet['xep_0352'].send_active()
    for client in (juliet, romeo):
        client.disconnect()
    await asyncio.sleep(0.2)
    print(json.dumps(result))


asyncio.get_event_loop().run_until_complete(main())
