"""Message archive (XEP-0313) with slixmpp's xep_0313 plugin: romeo sends juliet N messages, juliet
reads her archive page by page (RSM), asks for the last page, and romeo iterates over his.

Usage: /usr/bin/python3 mam.py HOST PORT N PAGE — prints one JSON line with what each saw.
"""
import asyncio
import json
import logging
import os
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp

if os.environ.get("SLIX_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT, N, PAGE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
MAM = 'urn:xmpp:mam:2'
RSM = 'http://jabber.org/protocol/rsm'


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The test server's certificate is self-signed, made for the test run.
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ('xep_0030', 'xep_0059', 'xep_0085', 'xep_0297', 'xep_0313', 'xep_0359'):
            self.register_plugin(plugin)
        self.live = []
        self.all_received = asyncio.get_event_loop().create_future()
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))

    def on_message(self, msg):
        if msg['type'] != 'chat' or not msg['body']:
            return
        sid = msg.xml.find('{urn:xmpp:sid:0}stanza-id')
        self.live.append({'body': msg['body'], 'stanza_id': None if sid is None else {'by': sid.get('by'), 'id': sid.get('id')}})
        if len(self.live) == N + 1 and not self.all_received.done():
            self.all_received.set_result(True)


def fin_of(iq):
    fin = iq.xml.find('{%s}fin' % MAM)
    rsm = fin.find('{%s}set' % RSM)
    text = lambda name: None if rsm.find('{%s}%s' % (RSM, name)) is None else rsm.find('{%s}%s' % (RSM, name)).text
    return {'complete': fin.get('complete'), 'first': text('first'), 'last': text('last'), 'count': text('count')}


def result_of(msg):
    forwarded = msg['mam_result']['forwarded']
    return {'id': msg['mam_result']['id'], 'body': forwarded['stanza']['body'], 'from': str(forwarded['stanza']['from']),
            'stamp': forwarded.xml.find('{urn:xmpp:delay}delay').get('stamp')}


async def main():
    juliet = Bot('juliet@localhost/slix', 'balcony')
    romeo = Bot('romeo@localhost/slix', 'r0meo!')
    for bot in (juliet, romeo):
        bot.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(asyncio.gather(juliet.ready, romeo.ready), 20)

    # Not archived: a chat state alone, and a message hinted <no-store/> (delivered all the same).
    state = romeo.make_message(mto='juliet@localhost', mtype='chat')
    state['chat_state'] = 'composing'
    state.send()
    hinted = romeo.make_message(mto='juliet@localhost', mbody='forget me', mtype='chat')
    hinted.xml.append(ET.Element('{urn:xmpp:hints}no-store'))
    hinted.send()
    for i in range(N):
        romeo.send_message(mto='juliet@localhost', mbody='line %d' % i, mtype='chat')
    await asyncio.wait_for(juliet.all_received, 30)

    features = (await juliet['xep_0030'].get_info(jid='juliet@localhost'))['disco_info']['features']

    # Juliet pages forward through her conversation with romeo, PAGE at a time.
    pages, after = [], None
    while True:
        rsm = {'max': PAGE}
        if after is not None:
            rsm['after'] = after
        iq = await juliet['xep_0313'].retrieve(with_jid=slixmpp.JID('romeo@localhost'), rsm=rsm, timeout=20)
        fin = fin_of(iq)
        pages.append({'results': [result_of(m) for m in iq['mam']['results']], 'fin': fin})
        if fin['complete'] == 'true' or len(pages) > N:
            break
        after = fin['last']

    # The last page: an empty <before/> (XEP-0313 §4.3.3), collected by queryid.
    last_page = []
    juliet.register_handler(slixmpp.xmlstream.handler.Callback(
        'last page', slixmpp.xmlstream.matcher.MatchXPath('{jabber:client}message/{%s}result' % MAM),
        lambda msg: last_page.append(result_of(msg)) if msg['mam_result']['queryid'] == 'lastpage' else None))
    iq = juliet.make_iq_set()
    iq['mam']['queryid'] = 'lastpage'
    iq['mam']['rsm']['max'] = '3'
    iq['mam']['rsm']['before'] = True
    last_fin = fin_of(await iq.send(timeout=20))

    # Romeo iterates over his own archive (his sent messages) with the plugin's RSM iterator.
    romeo_bodies = []
    async for msg in romeo['xep_0313'].iterate(with_jid=slixmpp.JID('juliet@localhost'), rsm={'max': 7}):
        romeo_bodies.append(msg['mam_result']['forwarded']['stanza']['body'])

    print(json.dumps({'live': juliet.live, 'features': sorted(features), 'pages': pages,
                      'last_page': {'results': last_page, 'fin': last_fin}, 'romeo': romeo_bodies}), flush=True)
    for bot in (juliet, romeo):
        bot.disconnect()


asyncio.get_event_loop().run_until_complete(main())
