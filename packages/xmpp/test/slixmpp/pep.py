"""PEP with slixmpp: juliet publishes a nickname (xep_0172) and an avatar (xep_0084) that romeo, a
contact whose caps (xep_0115) say +notify, receives as notifications; a second resource of
romeo's gets the last items when it comes online; the avatar shows in juliet's vCard (xep_0054,
XEP-0398) and her presence (XEP-0153); bookmarks written with xep_0048 in private storage
(xep_0049) are read back as XEP-0402 items, an XEP-0402 item is read back with xep_0048, and
xep_0048 through PEP (xep_0223) joins them.

Usage: /usr/bin/python3 pep.py HOST PORT — prints one JSON line describing what happened.
"""
import asyncio
import base64
import hashlib
import json
import logging
import os
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.plugins.xep_0048 import Bookmarks

if os.environ.get('SLIX_DEBUG'):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT = sys.argv[1], int(sys.argv[2])
BOOKMARKS2 = 'urn:xmpp:bookmarks:1'
AVATAR = bytes(range(256)) * 4 + b'portbind avatar'


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.nicks = asyncio.Queue()
        self.avatars = asyncio.Queue()
        self.presences = asyncio.Queue()
        for plugin in ['xep_0030', 'xep_0060', 'xep_0115', 'xep_0163', 'xep_0084', 'xep_0172', 'xep_0054', 'xep_0049', 'xep_0048']:
            self.register_plugin(plugin)
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('user_nick_publish', lambda msg: self.nicks.put_nowait(msg))
        self.add_event_handler('avatar_metadata_publish', lambda msg: self.avatars.put_nowait(msg))
        self.add_event_handler('presence_available', lambda pres: self.presences.put_nowait(pres))
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))

    async def on_start(self, _event):
        await self.get_roster()
        # The caps with every +notify interest registered before the first presence carries them.
        await self['xep_0115'].update_caps(broadcast=False)
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))


async def online(jid, password):
    client = Client(jid, password)
    client.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(client.ready, 20)
    return client


async def until(predicate, seconds=10):
    for _ in range(seconds * 20):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def presence_from(client, jid, predicate=lambda pres: True):
    while True:
        pres = await asyncio.wait_for(client.presences.get(), 10)
        if str(pres['from']) == jid and predicate(pres):
            return pres


async def main():
    juliet = await online('juliet@localhost/balcony', 'balcony')
    romeo = await online('romeo@localhost/garden', 'r0meo!')
    result = {}

    # Mutual subscription (slixmpp authorizes and subscribes back by default).
    juliet.send_presence_subscription('romeo@localhost')
    result['subscribed'] = await until(
        lambda: juliet.client_roster['romeo@localhost']['subscription'] == 'both'
        and romeo.client_roster['juliet@localhost']['subscription'] == 'both'
    )
    # Each sees the other's presence before anything is published.
    await presence_from(romeo, 'juliet@localhost/balcony')

    await juliet['xep_0172'].publish_nick('Jules', timeout=10)
    nick = await asyncio.wait_for(romeo.nicks.get(), 10)
    result['nick'] = {'from': str(nick['from']), 'nick': nick['pubsub_event']['items']['item']['nick']['nick']}

    avatar_id = hashlib.sha1(AVATAR).hexdigest()
    await juliet['xep_0084'].publish_avatar(AVATAR, timeout=10)
    await juliet['xep_0084'].publish_avatar_metadata(
        {'id': avatar_id, 'type': 'image/png', 'bytes': len(AVATAR)}, timeout=10
    )
    metadata = await asyncio.wait_for(romeo.avatars.get(), 10)
    info = metadata['pubsub_event']['items']['item']['avatar_metadata']['items'][0]
    result['avatarNotified'] = info['id'] == avatar_id
    fetched = await romeo['xep_0084'].retrieve_avatar('juliet@localhost', avatar_id, timeout=10)
    result['avatarFetched'] = fetched['pubsub']['items']['item']['avatar_data']['value'] == AVATAR

    # XEP-0398: the vCard follows; XEP-0153: her presence names the avatar.
    card = await romeo['xep_0054'].get_vcard('juliet@localhost', timeout=10)
    binval = card.xml.find('{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL')
    result['vcardPhoto'] = binval is not None and base64.b64decode(binval.text) == AVATAR
    juliet.send_presence(pstatus='with an avatar')
    pres = await presence_from(romeo, 'juliet@localhost/balcony', lambda p: p['status'] == 'with an avatar')
    photo = pres.xml.find('{vcard-temp:x:update}x/{vcard-temp:x:update}photo')
    result['presencePhoto'] = photo is not None and photo.text == avatar_id

    # A second resource of romeo's gets the last items when it comes online.
    laptop = await online('romeo@localhost/laptop', 'r0meo!')
    last = await asyncio.wait_for(laptop.nicks.get(), 10)
    result['lastNick'] = last['pubsub_event']['items']['item']['nick']['nick']

    # Bookmarks, the old way (XEP-0048 in private storage) …
    legacy = Bookmarks()
    legacy.add_conference('council@chat.example', 'JC', name='The Council', autojoin=True)
    await juliet['xep_0048'].set_bookmarks(legacy, method='xep_0049', timeout=10)
    items = await juliet['xep_0060'].get_items(None, BOOKMARKS2, timeout=10)
    result['bookmarks2'] = sorted(
        (item['id'], item.xml.find('{%s}conference' % BOOKMARKS2).get('name'))
        for item in items['pubsub']['items']
    )
    # … and the new way (XEP-0402), read back the old way.
    conference = ET.Element('{%s}conference' % BOOKMARKS2, {'name': 'Orchard', 'autojoin': 'false'})
    ET.SubElement(conference, '{%s}nick' % BOOKMARKS2).text = 'Juliet'
    options = juliet['xep_0004'].make_form(ftype='submit')
    options.add_field(var='FORM_TYPE', ftype='hidden', value='http://jabber.org/protocol/pubsub#publish-options')
    options.add_field(var='pubsub#persist_items', value='true')
    options.add_field(var='pubsub#max_items', value='max')
    options.add_field(var='pubsub#send_last_published_item', value='never')
    options.add_field(var='pubsub#access_model', value='whitelist')
    await juliet['xep_0060'].publish(None, BOOKMARKS2, id='orchard@chat.example', payload=conference, options=options, timeout=10)
    read = await juliet['xep_0048'].get_bookmarks(method='xep_0049', timeout=10)
    result['legacy'] = sorted(
        (str(conf['jid']), conf['name'], conf['nick'], bool(conf['autojoin']))
        for conf in read['private']['bookmarks']['conferences']
    )

    # XEP-0048 through PEP (xep_0223, #compat-pep): the first legacy publish adds to the others,
    # and reads back the same both ways.
    through_pep = Bookmarks()
    through_pep.add_conference('balcony@chat.example', 'JC', name='Balcony', autojoin=True)
    await juliet['xep_0048'].set_bookmarks(through_pep, method='xep_0223', timeout=10)
    read = await juliet['xep_0048'].get_bookmarks(method='xep_0049', timeout=10)
    result['afterPep'] = sorted(str(conf['jid']) for conf in read['private']['bookmarks']['conferences'])
    read = await juliet['xep_0048'].get_bookmarks(method='xep_0223', timeout=10)
    result['legacyPep'] = sorted(
        str(conf['jid']) for conf in read['pubsub']['items']['item']['bookmarks']['conferences']
    )

    for client in (juliet, romeo, laptop):
        client.disconnect()
    print(json.dumps(result))


asyncio.run(main())
