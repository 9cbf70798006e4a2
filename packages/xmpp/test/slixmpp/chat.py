"""Two slixmpp clients log in (STARTTLS + SCRAM) and exchange a message both ways.

Usage: /usr/bin/python3 chat.py HOST PORT — prints one JSON line with what each received.
"""
import asyncio
import json
import ssl
import sys

import logging
import os

import slixmpp

if os.environ.get("SLIX_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT = sys.argv[1], int(sys.argv[2])


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The test server's certificate is self-signed, made for the test run.
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.received = asyncio.get_event_loop().create_future()
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))

    def on_message(self, msg):
        if msg['type'] in ('chat', 'normal') and not self.received.done():
            self.received.set_result({'from': str(msg['from']), 'body': msg['body']})


async def main():
    juliet = Bot('juliet@localhost/slix', 'balcony')
    romeo = Bot('romeo@localhost/slix', 'r0meo!')
    for bot in (juliet, romeo):
        bot.connect(address=(HOST, PORT), force_starttls=True)
    jids = await asyncio.wait_for(asyncio.gather(juliet.ready, romeo.ready), 20)
    # Let the server see both initial presences before messaging a bare JID.
    await asyncio.sleep(0.3)
    romeo.send_message(mto='juliet@localhost', mbody='Wherefore art thou, from slixmpp?', mtype='chat')
    to_juliet = await asyncio.wait_for(juliet.received, 20)
    juliet.send_message(mto=jids[1], mbody='Here, in the orchard.', mtype='chat')
    to_romeo = await asyncio.wait_for(romeo.received, 20)
    print(json.dumps({'jids': jids, 'juliet': to_juliet, 'romeo': to_romeo}), flush=True)
    for bot in (juliet, romeo):
        bot.disconnect()


asyncio.get_event_loop().run_until_complete(main())
