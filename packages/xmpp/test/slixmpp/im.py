"""RFC 6121 with slixmpp: in-band registration, roster and presence subscription, offline delivery.

Usage: /usr/bin/python3 im.py HOST PORT — prints one JSON line describing what happened.
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
    def __init__(self, jid, password, register=False):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.messages = asyncio.Queue()
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0199')
        if register:
            # slixmpp 1.8 holds back stanzas until the session starts; in-band registration
            # happens before authentication, so let them through (its own flag for this).
            self._always_send_everything = True
            self.register_plugin('xep_0077')
            self['xep_0077'].force_registration = True
            self.add_event_handler('register', self.on_register)
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', lambda msg: self.messages.put_nowait(msg))
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    async def on_register(self, _iq):
        iq = self.Iq()
        iq['type'] = 'set'
        iq['register']['username'] = self.boundjid.user
        iq['register']['password'] = self.password
        await iq.send()

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))


async def online(jid, password, register=False):
    client = Client(jid, password, register)
    client.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(client.ready, 20)
    return client


def roster_of(client, contact):
    item = client.client_roster[contact]
    return item['subscription']


async def main():
    result = {}
    # Two accounts made by in-band registration, then used.
    benvolio = await online('benvolio@localhost/slix', 'peace', register=True)
    mercutio = await online('mercutio@localhost/slix', 'queen-mab', register=True)
    result['registered'] = [str(benvolio.boundjid.bare), str(mercutio.boundjid.bare)]

    # Subscription handshake: slixmpp approves and subscribes back by default (auto_authorize, auto_subscribe).
    benvolio.send_presence(pto='mercutio@localhost', ptype='subscribe')
    for _ in range(100):
        if roster_of(benvolio, 'mercutio@localhost') == 'both' and roster_of(mercutio, 'benvolio@localhost') == 'both':
            break
        await asyncio.sleep(0.1)
    result['subscriptions'] = [roster_of(benvolio, 'mercutio@localhost'), roster_of(mercutio, 'benvolio@localhost')]

    # Mercutio goes offline; a message to his bare JID waits for him.
    mercutio.disconnect()
    await asyncio.sleep(0.5)
    benvolio.send_message(mto='mercutio@localhost', mbody='A plague on both your houses?', mtype='chat')
    await asyncio.sleep(0.5)
    mercutio = await online('mercutio@localhost/again', 'queen-mab')
    message = await asyncio.wait_for(mercutio.messages.get(), 20)
    result['offline'] = {
        'from': str(message['from']),
        'body': message['body'],
        'delayed': 'urn:xmpp:delay' in str(message),
    }
    print(json.dumps(result), flush=True)
    for client in (benvolio, mercutio):
        client.disconnect()


asyncio.get_event_loop().run_until_complete(main())
