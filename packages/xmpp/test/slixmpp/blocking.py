"""XEP-0191 with slixmpp's xep_0191: juliet blocks romeo, romeo's message bounces and never arrives,
juliet's message to romeo bounces with <blocked/>, then an unblock lets romeo through.

Usage: /usr/bin/python3 blocking.py HOST PORT — prints one JSON line describing what happened.
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
BLOCKING_ERRORS = 'urn:xmpp:blocking:errors'


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.messages = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.pushes = asyncio.Queue()
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0191')
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('message_error', self.errors.put_nowait)
        self.add_event_handler('blocked', lambda iq: self.pushes.put_nowait(('block', iq)))
        self.add_event_handler('unblocked', lambda iq: self.pushes.put_nowait(('unblock', iq)))
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    def on_message(self, msg):
        if msg['type'] != 'error':
            self.messages.put_nowait(msg)

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))


async def online(jid, password):
    client = Client(jid, password)
    client.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(client.ready, 20)
    return client


def jids_of(items):
    return sorted(str(jid) for jid in items)


async def main():
    juliet = await online('juliet@localhost/slix', 'balcony')
    romeo = await online('romeo@localhost/slix', 'r0meo!')
    result = {}

    before = await juliet['xep_0191'].get_blocked(timeout=10)
    result['before'] = jids_of(before['blocklist']['items'])
    await juliet['xep_0191'].block('romeo@localhost', timeout=10)
    kind, push = await asyncio.wait_for(juliet.pushes.get(), 10)
    result['pushed'] = jids_of(push['block']['items']) if kind == 'block' else kind
    after = await juliet['xep_0191'].get_blocked(timeout=10)
    result['after'] = jids_of(after['blocklist']['items'])

    # romeo writes to a juliet who blocked him: the message bounces and never arrives.
    romeo.send_message(mto='juliet@localhost', mbody='blocked words', mtype='chat')
    bounce = await asyncio.wait_for(romeo.errors.get(), 10)
    result['romeoBounced'] = bounce['error']['condition']

    # juliet writes to romeo, whom she blocked: not-acceptable with <blocked/>.
    juliet.send_message(mto='romeo@localhost', mbody='hello?', mtype='chat')
    refused = await asyncio.wait_for(juliet.errors.get(), 10)
    blocked = refused.xml.find('{jabber:client}error/{%s}blocked' % BLOCKING_ERRORS) is not None
    result['julietBounced'] = {'condition': refused['error']['condition'], 'blocked': blocked}

    # After the unblock romeo gets through; what he sent while blocked never shows up.
    await juliet['xep_0191'].unblock('romeo@localhost', timeout=10)
    kind, push = await asyncio.wait_for(juliet.pushes.get(), 10)
    result['unpushed'] = jids_of(push['unblock']['items']) if kind == 'unblock' else kind
    romeo.send_message(mto='juliet@localhost', mbody='after the unblock', mtype='chat')
    first = await asyncio.wait_for(juliet.messages.get(), 10)
    received = [first['body']]
    while not juliet.messages.empty():
        received.append(juliet.messages.get_nowait()['body'])
    result['received'] = received

    for client in (juliet, romeo):
        client.disconnect()
    print(json.dumps(result, sort_keys=True))


asyncio.run(main())
