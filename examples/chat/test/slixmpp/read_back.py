"""After the chat example was killed and restarted: what nurse and juliet find, with slixmpp.

nurse logs in over direct TLS (XEP-0368) and gets the message romeo sent while she was offline and
his subscription request; juliet (STARTTLS) reads her roster and her archive of romeo's messages.

Usage: /usr/bin/python3 read_back.py HOST XMPP_PORT XMPPS_PORT — prints one JSON line.
"""
import asyncio
import json
import logging
import os
import ssl
import sys

import slixmpp

if os.environ.get("SLIX_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)

HOST, XMPP_PORT, XMPPS_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The example's development certificate is self-signed.
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # Record subscription requests; answer none of them.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        for plugin in ('xep_0030', 'xep_0059', 'xep_0203', 'xep_0297', 'xep_0313', 'xep_0359'):
            self.register_plugin(plugin)
        self.messages = []
        self.requests = []
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('presence_subscribe', lambda p: self.requests.append(str(p['from'].bare)))
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))

    def on_message(self, msg):
        if msg['body']:
            delay = msg.xml.find('{urn:xmpp:delay}delay')
            self.messages.append({'from': str(msg['from'].bare), 'body': msg['body'], 'delayed': delay is not None})


async def wait_for(predicate, seconds):
    loop = asyncio.get_event_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def main():
    nurse = Bot('nurse@localhost/slix', 'angelica')
    # Direct TLS from the first byte on XMPPS_PORT.
    nurse.connect(address=(HOST, XMPPS_PORT), use_ssl=True)
    juliet = Bot('juliet@localhost/slix', 'balcony')
    juliet.connect(address=(HOST, XMPP_PORT), force_starttls=True)
    await asyncio.wait_for(asyncio.gather(nurse.ready, juliet.ready), 30)

    await wait_for(lambda: nurse.messages and nurse.requests, 10)
    roster = {jid: {'subscription': juliet.client_roster[jid]['subscription'],
                    'pending_out': juliet.client_roster[jid]['pending_out']} for jid in juliet.client_roster}
    archive = []
    async for msg in juliet['xep_0313'].iterate(with_jid=slixmpp.JID('romeo@localhost'), rsm={'max': 10}):
        archive.append(msg['mam_result']['forwarded']['stanza']['body'])

    print(json.dumps({'nurse': {'messages': nurse.messages, 'requests': nurse.requests},
                      'juliet': {'roster': roster, 'archive': archive}}), flush=True)
    for bot in (nurse, juliet):
        bot.disconnect()


asyncio.get_event_loop().run_until_complete(main())
