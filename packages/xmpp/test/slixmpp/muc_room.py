"""Multi-User Chat (XEP-0045) with slixmpp's xep_0045 plugin, in a room a raw stream created: romeo
(made an owner by the raw stream) and the nurse join with join_muc_wait (history, subject, occupants),
talk, romeo reads and changes the configuration, kicks the nurse, and reads the room's archive
(XEP-0313 on the room JID).

Usage: /usr/bin/python3 muc_room.py HOST PORT ROOM — prints one JSON line (the last) with what each saw.
"""
import asyncio
import json
import logging
import os
import ssl
import sys

import slixmpp
from slixmpp.exceptions import PresenceError

if os.environ.get("SLIX_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)

HOST, PORT, ROOM = sys.argv[1], int(sys.argv[2]), slixmpp.JID(sys.argv[3])


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The test server's certificate is self-signed, made for the test run.
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ('xep_0030', 'xep_0045', 'xep_0059', 'xep_0082', 'xep_0203', 'xep_0297', 'xep_0313', 'xep_0359'):
            self.register_plugin(plugin)
        self.ready = asyncio.get_event_loop().create_future()
        self.groupchat = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('failed_auth', lambda _: self.ready.done() or self.ready.set_exception(RuntimeError('auth failed')))
        self.add_event_handler('muc::%s::message' % ROOM, self.on_groupchat)
        self.add_event_handler('muc::%s::presence' % ROOM, lambda p: self.presences.put_nowait(p))
        # After leave_muc the plugin forgets the room: the room's answer is seen as a plain presence.
        self.unavailable = asyncio.Queue()
        self.register_handler(slixmpp.xmlstream.handler.Callback(
            'room presence', slixmpp.xmlstream.matcher.MatchXPath('{jabber:client}presence'),
            lambda p: self.unavailable.put_nowait(p) if p['type'] == 'unavailable' and p['from'].bare == ROOM else None))

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(str(self.boundjid))

    def on_groupchat(self, msg):
        if msg['body'] and msg.get_plugin('delay', check=True) is None:
            self.groupchat.put_nowait(msg)


def codes_of(pres):
    return sorted(int(s.get('code')) for s in pres.xml.iter('{http://jabber.org/protocol/muc#user}status'))


async def next_matching(queue, test, timeout=15):
    while True:
        item = await asyncio.wait_for(queue.get(), timeout)
        if test(item):
            return item


async def main():
    romeo = Bot('romeo@localhost/slix', 'r0meo!')
    nurse = Bot('nurse@localhost/slix', 'n')
    for bot in (romeo, nurse):
        bot.connect(address=(HOST, PORT), force_starttls=True)
    await asyncio.wait_for(asyncio.gather(romeo.ready, nurse.ready), 20)
    muc = romeo['xep_0045']
    result = {}

    # Join: own presence, subject, occupants already there, the history (with delays from the room).
    pres, subject, occupants, history = await muc.join_muc_wait(ROOM, 'Romeo', maxstanzas=10, timeout=15)
    result['romeo_join'] = {
        'codes': codes_of(pres),
        'affiliation': pres['muc']['affiliation'],
        'role': pres['muc']['role'],
        'subject': subject['subject'],
        'occupants': sorted(p['muc']['nick'] for p in occupants),
        'history': [m['body'] for m in history],
    }
    # A taken nick: the nurse gets 409 conflict, then joins under her own.
    try:
        await nurse['xep_0045'].join_muc_wait(ROOM, 'Romeo', maxstanzas=0, timeout=15)
        result['nurse_conflict'] = None
    except PresenceError as error:
        result['nurse_conflict'] = error.condition
    pres, _subject, occupants, history = await nurse['xep_0045'].join_muc_wait(ROOM, 'Nurse', maxstanzas=0, timeout=15)
    result['nurse_join'] = {'role': pres['muc']['role'], 'occupants': sorted(p['muc']['nick'] for p in occupants), 'history': len(history)}

    # Talk: the nurse's message reaches romeo from her room JID.
    nurse.send_message(mto=ROOM, mbody='Anon, good nurse!', mtype='groupchat')
    heard = await next_matching(romeo.groupchat, lambda m: m['body'] == 'Anon, good nurse!')
    result['heard'] = {'from': str(heard['from']), 'stanza_id_by': heard['stanza_id']['by']}

    # Configuration: read the form, make the room moderated, persistent, with a name.
    form = await muc.get_room_config(ROOM, timeout=15)
    result['form_fields'] = sorted(f for f in form.get_fields().keys() if f != 'FORM_TYPE')
    new = form.get_fields()
    submit = slixmpp.plugins.xep_0004.stanza.Form()
    submit['type'] = 'submit'
    submit.add_field(var='FORM_TYPE', ftype='hidden', value='http://jabber.org/protocol/muc#roomconfig')
    submit.add_field(var='muc#roomconfig_roomname', value='Capulet hall')
    submit.add_field(var='muc#roomconfig_moderatedroom', ftype='boolean', value=True)
    submit.add_field(var='muc#roomconfig_persistentroom', ftype='boolean', value=True)
    await muc.set_room_config(ROOM, submit, timeout=15)
    info = await romeo['xep_0030'].get_info(jid=ROOM, timeout=15)
    result['features'] = sorted(info['disco_info']['features'])
    result['identity'] = [list(i) for i in info['disco_info']['identities']]
    result['had_fields'] = len(new)

    # Kick the nurse: she sees her own unavailable presence with 307 (and 110).
    await muc.set_role(ROOM, 'Nurse', 'none', reason='too talkative', timeout=15)
    kicked = await next_matching(nurse.presences, lambda p: p['type'] == 'unavailable' and p['from'].resource == 'Nurse')
    result['kicked'] = {'codes': codes_of(kicked), 'reason': kicked['muc']['item']['reason'] if 'reason' in kicked['muc']['item'].keys() else None}
    kicked_text = kicked.xml.find('.//{http://jabber.org/protocol/muc#user}reason')
    result['kicked']['reason'] = None if kicked_text is None else kicked_text.text

    # The room's archive, queried on the room JID.
    iq = await romeo['xep_0313'].retrieve(jid=ROOM, rsm={'max': 50}, timeout=15)
    result['mam'] = [
        {'body': m['mam_result']['forwarded']['stanza']['body'], 'from': str(m['mam_result']['forwarded']['stanza']['from'])}
        for m in iq['mam']['results']
    ]

    # Leave.
    muc.leave_muc(ROOM, 'Romeo', msg='farewell')
    left = await next_matching(romeo.unavailable, lambda p: p['type'] == 'unavailable' and p['from'].resource == 'Romeo')
    result['left_codes'] = codes_of(left)

    print(json.dumps(result, sort_keys=True), flush=True)
    for bot in (romeo, nurse):
        bot.disconnect()


asyncio.get_event_loop().run_until_complete(main())
