"""An XEP-0357 app server as a slixmpp external component (XEP-0114, slixmpp.ComponentXMPP).

Usage: /usr/bin/python3 component_push.py HOST PORT DOMAIN SECRET MODE
  MODE 'answer': print READY once the handshake is accepted, wait for one push publish, answer it
                 with a result, and print one JSON line: the publish's addresses, node and summary form.
  MODE 'reject': the same, answering with <item-not-found/> (the device is gone).
  MODE 'wrong':  connect with SECRET (a wrong one) and print the stream error the server sends.
"""
import asyncio
import json
import logging
import os
import sys

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

if os.environ.get('SLIX_DEBUG'):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT, DOMAIN, SECRET, MODE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
PUBSUB = 'http://jabber.org/protocol/pubsub'
PUSH = 'urn:xmpp:push:0'
DATA = 'jabber:x:data'


class AppServer(slixmpp.ComponentXMPP):
    def __init__(self):
        super().__init__(DOMAIN, SECRET, HOST, PORT)
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.published = loop.create_future()
        self.stream_failed = loop.create_future()
        self.add_event_handler('session_start', lambda _: self.started.done() or self.started.set_result(True))
        self.add_event_handler('stream_error', self.on_stream_error)
        self.add_event_handler('disconnected', lambda _: self.stream_failed.done() or self.stream_failed.set_result(None))
        self.register_handler(Callback('push publish', MatchXPath('{%s}iq/{%s}pubsub' % (self.default_ns, PUBSUB)), self.on_publish))

    def on_stream_error(self, error):
        if not self.stream_failed.done():
            self.stream_failed.set_result(error['condition'])

    def on_publish(self, iq):
        if iq['type'] != 'set':
            return
        pubsub = iq.xml.find('{%s}pubsub' % PUBSUB)
        publish = pubsub.find('{%s}publish' % PUBSUB)
        fields = {}
        form = publish.find('{%s}item/{%s}notification/{%s}x' % (PUBSUB, PUSH, DATA))
        for field in form.findall('{%s}field' % DATA):
            value = field.find('{%s}value' % DATA)
            fields[field.get('var')] = value.text if value is not None else None
        options = {}
        options_form = pubsub.find('{%s}publish-options/{%s}x' % (PUBSUB, DATA))
        if options_form is not None:
            for field in options_form.findall('{%s}field' % DATA):
                value = field.find('{%s}value' % DATA)
                options[field.get('var')] = value.text if value is not None else None
        if MODE == 'reject':
            reply = iq.reply(clear=True)
            reply.error()
            reply['error']['type'] = 'cancel'
            reply['error']['condition'] = 'item-not-found'
            reply.send()
        else:
            iq.reply(clear=True).send()
        if not self.published.done():
            self.published.set_result({
                'from': str(iq['from']),
                'to': str(iq['to']),
                'node': publish.get('node'),
                'summary': fields,
                'publishOptions': options,
            })


async def main():
    app = AppServer()
    app.connect()
    if MODE == 'wrong':
        condition = await asyncio.wait_for(app.stream_failed, 20)
        print(json.dumps({'streamError': condition, 'started': app.started.done()}), flush=True)
        return
    await asyncio.wait_for(app.started, 20)
    print('READY', flush=True)
    result = await asyncio.wait_for(app.published, 60)
    # Let the answer leave before the stream ends.
    await asyncio.sleep(0.2)
    app.disconnect()
    print(json.dumps(result), flush=True)


asyncio.get_event_loop().run_until_complete(main())
