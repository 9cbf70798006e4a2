// The chat page: contacts with presence, conversations with their history from the archive (MAM),
// rooms (MUC), file upload, and errors shown where they happen. Everything a peer sends reaches the
// page as text (textContent, element properties), never as HTML.
import { bare, child, childText, resourceOf, Xmpp, XmppError, x } from './xmpp.js';

const NS = {
  roster: 'jabber:iq:roster',
  mam: 'urn:xmpp:mam:2',
  rsm: 'http://jabber.org/protocol/rsm',
  forward: 'urn:xmpp:forward:0',
  delay: 'urn:xmpp:delay',
  carbons: 'urn:xmpp:carbons:2',
  muc: 'http://jabber.org/protocol/muc',
  mucUser: 'http://jabber.org/protocol/muc#user',
  conference: 'jabber:x:conference',
  upload: 'urn:xmpp:http:upload:0',
  oob: 'jabber:x:oob',
  items: 'http://jabber.org/protocol/disco#items',
  info: 'http://jabber.org/protocol/disco#info',
  sid: 'urn:xmpp:sid:0',
  ping: 'urn:xmpp:ping',
};

const $ = (id) => document.getElementById(id);
const domain = document.querySelector('meta[name="xmpp-domain"]').content;

/** A DOM element; string children become text nodes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'data') Object.assign(el.dataset, value);
    else el[key] = value;
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c);
  return el;
}

let xmpp;
let me = '';
/** bare JID → { jid, name, subscription, ask, resources: Map(resource → { show, status }) } */
const contacts = new Map();
/** Bare JIDs asking to see our presence. */
const requests = new Set();
/** bare JID → { jid, kind: 'chat' | 'groupchat', messages, keys, unread, nick, occupants, joined } */
const conversations = new Map();
let active;
const services = { muc: `conference.${domain}`, upload: undefined, maxFileSize: undefined };

// --- logging in and out -----------------------------------------------------------------------------

$('user').value = localStorage.getItem('chat.user') ?? '';

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('login').querySelector('button');
  button.disabled = true;
  $('login-error').textContent = '';
  const user = $('user').value.trim();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = new Xmpp({ url: `${scheme}//${location.host}/xmpp-websocket`, domain });
  client.on('stanza', (el) => {
    try {
      onStanza(el);
    } catch (error) {
      console.error(error);
    }
  });
  client.on('status', onStatus);
  xmpp = client;
  try {
    await client.login(user, $('password').value);
    localStorage.setItem('chat.user', user);
    $('password').value = '';
  } catch (error) {
    xmpp = undefined;
    $('login-error').textContent = loginError(error);
  } finally {
    button.disabled = false;
  }
});

function loginError(error) {
  if (!(error instanceof XmppError)) return String(error.message ?? error);
  if (error.condition === 'not-authorized') return 'Wrong user name or password.';
  if (error.condition === 'remote-connection-failed') return 'Cannot reach the server.';
  if (error.condition === 'temporary-auth-failure') return 'Too many attempts; try again later.';
  return `Login failed: ${error.message}`;
}

$('logout').addEventListener('click', async () => {
  const client = xmpp;
  xmpp = undefined;
  await client?.logout();
  contacts.clear();
  requests.clear();
  conversations.clear();
  active = undefined;
  for (const id of ['contacts', 'requests', 'rooms', 'messages', 'occupants']) $(id).replaceChildren();
  $('app').hidden = true;
  $('login').hidden = false;
  document.title = 'portbind chat';
});

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status').textContent = text;
}

function onStatus(status, detail) {
  if (status === 'online') {
    me = bare(xmpp.jid);
    $('me').textContent = xmpp.jid;
    setStatus('online', 'Online');
    $('login').hidden = true;
    $('app').hidden = false;
    startSession().catch((error) => setStatus('error', `Could not load the session: ${error.message}`));
  } else if (status === 'resumed') {
    setStatus('online', 'Online again (session resumed)');
  } else if (status === 'reconnecting') {
    setStatus('reconnecting', `Connection lost: reconnecting in ${Math.round(detail / 1000)} s…`);
  } else if (status === 'stream-error') {
    setStatus('error', `Disconnected by the server: ${detail.message}`);
  } else if (status === 'offline' && detail) {
    setStatus('error', `Offline: ${detail.message}`);
  }
}

// A new session (after logging in, or when a lost one could not be resumed): roster, presence,
// carbons, the archive, services, rooms.
async function startSession() {
  const roster = await xmpp.iq('get', undefined, x('query', { xmlns: NS.roster }));
  contacts.clear();
  for (const item of child(roster, 'query', NS.roster)?.children ?? []) updateContact(item);
  renderContacts();
  xmpp.send(x('presence'));
  xmpp.iq('set', undefined, x('enable', { xmlns: NS.carbons })).catch(() => {});
  discover().catch(() => {});
  await loadArchive();
  for (const { jid, nick } of savedRooms()) joinRoom(jid, nick);
}

// --- stanzas ------------------------------------------------------------------------------------------

function onStanza(el) {
  if (el.localName === 'message') onMessage(el);
  else if (el.localName === 'presence') onPresence(el);
  else if (el.localName === 'iq') onIq(el);
}

function onIq(el) {
  const type = el.getAttribute('type');
  if (type !== 'get' && type !== 'set') return;
  const from = el.getAttribute('from');
  const id = el.getAttribute('id');
  const query = child(el, 'query', NS.roster);
  if (type === 'set' && query && (!from || from === me)) {
    // A roster push (RFC 6121 §2.1.6).
    for (const item of query.children) updateContact(item);
    renderContacts();
    xmpp.send(x('iq', { type: 'result', id, to: from ?? undefined }));
    return;
  }
  if (type === 'get' && child(el, 'ping', NS.ping)) {
    xmpp.send(x('iq', { type: 'result', id, to: from ?? undefined }));
    return;
  }
  xmpp.send(
    x(
      'iq',
      { type: 'error', id, to: from ?? undefined },
      x('error', { type: 'cancel' }, x('service-unavailable', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' })),
    ),
  );
}

function updateContact(item) {
  const jid = item.getAttribute('jid');
  if (!jid) return;
  if (item.getAttribute('subscription') === 'remove') {
    contacts.delete(jid);
    return;
  }
  const existing = contacts.get(jid);
  contacts.set(jid, {
    jid,
    name: item.getAttribute('name') || jid,
    subscription: item.getAttribute('subscription') ?? 'none',
    ask: item.getAttribute('ask'),
    resources: existing?.resources ?? new Map(),
  });
}

function onPresence(el) {
  const from = el.getAttribute('from') ?? '';
  const jid = bare(from);
  const type = el.getAttribute('type');
  const room = conversations.get(jid);
  if (room?.kind === 'groupchat') return onRoomPresence(room, el);
  if (type === 'subscribe') {
    requests.add(jid);
    renderContacts();
    return;
  }
  if (jid === me) return;
  const contact = contacts.get(jid);
  if (!contact) return;
  if (type === 'unavailable' || type === 'error') contact.resources.delete(resourceOf(from));
  else if (!type)
    contact.resources.set(resourceOf(from), { show: childText(el, 'show') ?? 'online', status: childText(el, 'status') ?? '' });
  renderContacts();
}

function onMessage(el) {
  const from = el.getAttribute('from') ?? me;
  const result = child(el, 'result', NS.mam);
  if (result) {
    if (bare(from) === me) fromArchive(result);
    return;
  }
  const carbon = child(el, 'received', NS.carbons) ?? child(el, 'sent', NS.carbons);
  if (carbon) {
    // Only our own server may send carbons (XEP-0280 §11).
    const inner = child(child(carbon, 'forwarded', NS.forward), 'message');
    if (from === me && inner) chatMessage(inner, { live: true });
    return;
  }
  const type = el.getAttribute('type');
  if (type === 'error') return bounced(el);
  if (type === 'groupchat') return roomMessage(el, { live: true });
  const invite = child(el, 'x', NS.conference);
  if (invite?.getAttribute('jid')) return invited(el, invite);
  chatMessage(el, { live: true });
}

/** Keys that identify a message however it arrives (live, as a carbon, from the archive, reflected by a room). */
function keysOf(el, archiveId) {
  const keys = [];
  const id = el.getAttribute('id');
  // By sender and id: the bare JID in a chat (our own messages come back from the archive with our
  // full JID), the occupant's room JID in a room.
  const from = el.getAttribute('from') ?? me;
  if (id) keys.push(`${el.getAttribute('type') === 'groupchat' ? from : bare(from)}|${id}`);
  if (archiveId) keys.push(`archive|${archiveId}`);
  for (const sid of el.getElementsByTagNameNS(NS.sid, 'stanza-id')) keys.push(`archive|${sid.getAttribute('id')}`);
  return keys;
}

function stampOf(...els) {
  for (const el of els) {
    const stamp = child(el, 'delay', NS.delay)?.getAttribute('stamp');
    if (stamp && !Number.isNaN(Date.parse(stamp))) return new Date(stamp);
  }
  return new Date();
}

function messageOf(el) {
  const body = childText(el, 'body');
  const url = childText(child(el, 'x', NS.oob), 'url');
  return { id: el.getAttribute('id'), body, url };
}

function chatMessage(el, { live, archiveId, time }) {
  const { id, body, url } = messageOf(el);
  if (body === undefined) return;
  const from = el.getAttribute('from') ?? me;
  const outgoing = bare(from) === me;
  const peer = outgoing ? bare(el.getAttribute('to')) : bare(from);
  if (!peer || peer === me) return;
  const existing = conversations.get(peer);
  const conversation = existing?.kind === 'groupchat' ? existing : conversationOf(peer, 'chat');
  const sender = outgoing ? 'me' : (contacts.get(peer)?.name ?? peer);
  const privately = conversation.kind === 'groupchat' ? ` (private, ${resourceOf(from)})` : '';
  addMessage(conversation, {
    keys: keysOf(el, archiveId),
    id,
    sender: sender + privately,
    outgoing,
    body,
    url,
    time: time ?? stampOf(el),
    live,
  });
}

function fromArchive(result) {
  const forwarded = child(result, 'forwarded', NS.forward);
  const inner = child(forwarded, 'message');
  if (!inner || inner.getAttribute('type') === 'groupchat' || inner.getAttribute('type') === 'error') return;
  chatMessage(inner, { live: false, archiveId: result.getAttribute('id'), time: stampOf(forwarded, inner) });
}

function roomMessage(el, { live }) {
  const from = el.getAttribute('from') ?? '';
  const room = conversations.get(bare(from));
  if (room?.kind !== 'groupchat') return;
  const subject = childText(el, 'subject');
  if (subject !== undefined && childText(el, 'body') === undefined) {
    room.subject = subject;
    if (active === room.jid) renderTitle();
    return;
  }
  const { id, body, url } = messageOf(el);
  if (body === undefined) return;
  const nick = resourceOf(from);
  const delayed = child(el, 'delay', NS.delay) !== undefined;
  addMessage(room, {
    keys: keysOf(el),
    id,
    sender: nick || room.jid,
    outgoing: nick === room.nick,
    body,
    url,
    time: stampOf(el),
    live: live && !delayed,
  });
}

function bounced(el) {
  const error = XmppError.of(el);
  const jid = bare(el.getAttribute('from'));
  const conversation = conversations.get(jid) ?? conversationOf(jid, 'chat');
  const message = conversation.messages.find((m) => m.outgoing && m.id && m.id === el.getAttribute('id'));
  const text = `Not delivered: ${describe(error)}`;
  if (message) {
    message.error = text;
    message.pending = false;
    renderMessages(conversation);
  } else addNotice(conversation, text, true);
}

function invited(el, invite) {
  const room = invite.getAttribute('jid');
  const from = bare(el.getAttribute('from'));
  const conversation = conversationOf(from, 'chat');
  const reason = invite.getAttribute('reason');
  addNotice(conversation, `${from} invites you to ${room}${reason ? `: ${reason}` : ''}`, false, {
    label: 'Join',
    action: () => joinRoom(room, me.split('@')[0]),
  });
}

function describe(error) {
  const tooLarge = error.element?.getElementsByTagNameNS(NS.upload, 'file-too-large')[0];
  if (tooLarge) return `the file is too large (at most ${childText(tooLarge, 'max-file-size') ?? '?'} bytes)`;
  const names = {
    'service-unavailable': 'the recipient is unknown or not reachable',
    'item-not-found': 'no such recipient',
    'remote-server-not-found': 'that server is not reachable',
    forbidden: 'not allowed',
    'not-acceptable': 'not acceptable',
    conflict: 'that nickname is taken',
    'registration-required': 'the room is members-only',
    'not-authorized': 'a password is needed',
  };
  return `${names[error.condition] ?? error.condition}${error.text ? ` (${error.text})` : ''}`;
}

// --- the archive (XEP-0313): the latest messages of every conversation, after a reload too -------------

async function loadArchive() {
  await xmpp.iq(
    'set',
    undefined,
    x('query', { xmlns: NS.mam, queryid: xmpp.id() }, x('set', { xmlns: NS.rsm }, x('max', {}, '200'), x('before'))),
  );
  // How many archive queries were answered (tests wait for it).
  document.body.dataset.archiveLoads = String(Number(document.body.dataset.archiveLoads ?? 0) + 1);
}

// --- contacts and subscriptions -------------------------------------------------------------------

function normalize(jid) {
  const trimmed = jid.trim().toLowerCase();
  return trimmed.includes('@') ? trimmed : `${trimmed}@${domain}`;
}

$('add-contact').addEventListener('submit', async (event) => {
  event.preventDefault();
  const jid = normalize($('add-jid').value);
  $('side-error').textContent = '';
  try {
    await xmpp.iq('set', undefined, x('query', { xmlns: NS.roster }, x('item', { jid })));
    xmpp.send(x('presence', { to: jid, type: 'subscribe' }));
    $('add-jid').value = '';
  } catch (error) {
    $('side-error').textContent = `Could not add ${jid}: ${describe(error)}`;
  }
});

function answerRequest(jid, accept) {
  requests.delete(jid);
  xmpp.send(x('presence', { to: jid, type: accept ? 'subscribed' : 'unsubscribed' }));
  const contact = contacts.get(jid);
  // Accepting asks back, so both see each other (as Converse.js does).
  if (accept && !(contact && (contact.subscription === 'to' || contact.subscription === 'both' || contact.ask))) {
    xmpp.send(x('presence', { to: jid, type: 'subscribe' }));
  }
  renderContacts();
}

function presenceOf(contact) {
  const order = ['chat', 'online', 'away', 'xa', 'dnd'];
  let best;
  for (const { show, status } of contact.resources.values()) {
    if (!best || order.indexOf(show) < order.indexOf(best.show)) best = { show, status };
  }
  return best ?? { show: 'offline', status: '' };
}

function renderContacts() {
  // Contacts, and conversations with people not in the roster (a message from a stranger, a bounce).
  const strangers = [...conversations.values()]
    .filter((c) => c.kind === 'chat' && !contacts.has(c.jid))
    .map((c) => ({ jid: c.jid, name: c.jid, subscription: 'stranger', resources: new Map() }));
  const items = [...contacts.values(), ...strangers].sort((a, b) => a.name.localeCompare(b.name));
  $('contacts').replaceChildren(
    ...items.map((contact) => {
      const { show, status } = presenceOf(contact);
      const unread = conversations.get(contact.jid)?.unread ?? 0;
      const waiting =
        contact.subscription === 'stranger'
          ? 'not in your contacts'
          : contact.ask === 'subscribe'
            ? 'waiting for approval'
            : contact.subscription === 'none' || contact.subscription === 'from'
              ? 'presence not shared'
              : '';
      return h(
        'li',
        { data: { jid: contact.jid, show }, class: active === contact.jid ? 'active' : '', onclick: () => open(contact.jid) },
        h('span', { class: `dot ${show}`, title: show }),
        h(
          'span',
          { class: 'who' },
          h('span', { class: 'name' }, contact.name),
          h('span', { class: 'muted presence' }, `${show === 'offline' ? waiting || 'offline' : show}${status ? `: ${status}` : ''}`),
        ),
        unread > 0 && h('span', { class: 'unread' }, String(unread)),
      );
    }),
  );
  $('requests').replaceChildren(
    ...[...requests].map((jid) =>
      h(
        'li',
        { data: { jid } },
        h('span', {}, `${jid} wants to see your presence `),
        h('button', { type: 'button', class: 'accept', onclick: () => answerRequest(jid, true) }, 'Accept'),
        h('button', { type: 'button', class: 'decline', onclick: () => answerRequest(jid, false) }, 'Decline'),
      ),
    ),
  );
  $('rooms').replaceChildren(
    ...[...conversations.values()]
      .filter((c) => c.kind === 'groupchat')
      .map((room) =>
        h(
          'li',
          { data: { jid: room.jid }, class: active === room.jid ? 'active' : '', onclick: () => open(room.jid) },
          h('span', { class: `dot ${room.joined ? 'online' : 'offline'}` }),
          h('span', { class: 'name' }, room.jid),
          room.unread > 0 && h('span', { class: 'unread' }, String(room.unread)),
        ),
      ),
  );
  const total = [...conversations.values()].reduce((sum, c) => sum + c.unread, 0);
  document.title = total > 0 ? `(${total}) portbind chat` : 'portbind chat';
}

// --- rooms (XEP-0045) ----------------------------------------------------------------------------------

function savedRooms() {
  try {
    return JSON.parse(localStorage.getItem(`chat.rooms.${me}`) ?? '[]');
  } catch {
    return [];
  }
}

function saveRooms() {
  const rooms = [...conversations.values()].filter((c) => c.kind === 'groupchat').map((c) => ({ jid: c.jid, nick: c.nick }));
  localStorage.setItem(`chat.rooms.${me}`, JSON.stringify(rooms));
}

$('join-room').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('room').value.trim().toLowerCase();
  const jid = name.includes('@') ? name : `${name}@${services.muc}`;
  joinRoom(jid, $('nick').value.trim() || me.split('@')[0]);
  $('room').value = '';
  open(jid);
});

function joinRoom(jid, nick) {
  const room = conversationOf(jid, 'groupchat');
  room.nick = nick;
  room.joined = false;
  room.occupants = new Map();
  // Room history on join: the last 50 messages, or (after a lost session) those since a minute before
  // the last one we have; what we have already is recognised by its id and left out.
  const last = room.messages.findLast((m) => !m.notice)?.time;
  const since = last && new Date(last.getTime() - 60_000).toISOString();
  const history = since ? x('history', { since, maxstanzas: '50' }) : x('history', { maxstanzas: '50' });
  xmpp.send(x('presence', { to: `${jid}/${nick}` }, x('x', { xmlns: NS.muc }, history)));
  saveRooms();
  renderContacts();
}

function onRoomPresence(room, el) {
  const from = el.getAttribute('from') ?? '';
  const nick = resourceOf(from);
  const type = el.getAttribute('type');
  const user = child(el, 'x', NS.mucUser);
  const codes = new Set([...(user?.getElementsByTagNameNS(NS.mucUser, 'status') ?? [])].map((s) => s.getAttribute('code')));
  const self = codes.has('110') || nick === room.nick;
  if (type === 'error') {
    room.joined = false;
    addNotice(room, `Could not join ${room.jid}: ${describe(XmppError.of(el))}`, true);
  } else if (type === 'unavailable') {
    room.occupants.delete(nick);
    if (self) {
      room.joined = false;
      if (codes.has('307')) addNotice(room, 'You were kicked from the room', true);
      else if (codes.has('301')) addNotice(room, 'You were banned from the room', true);
    }
  } else {
    const item = child(user, 'item');
    room.occupants.set(nick, { role: item?.getAttribute('role'), affiliation: item?.getAttribute('affiliation') });
    if (self && !room.joined) {
      room.joined = true;
      addNotice(room, `You joined ${room.jid} as ${nick}${codes.has('201') ? ' (a new room)' : ''}`, false);
      // A new room stays locked until its owner configures it: accept the defaults (an instant room, XEP-0045 §10.1.2).
      if (codes.has('201')) {
        xmpp
          .iq('set', room.jid, x('query', { xmlns: `${NS.muc}#owner` }, x('x', { xmlns: 'jabber:x:data', type: 'submit' })))
          .catch((error) => addNotice(room, `Could not open the new room: ${describe(error)}`, true));
      }
    }
  }
  renderContacts();
  if (active === room.jid) renderTitle();
}

$('leave').addEventListener('click', () => {
  const room = conversations.get(active);
  if (room?.kind !== 'groupchat') return;
  xmpp.send(x('presence', { to: `${room.jid}/${room.nick}`, type: 'unavailable' }));
  conversations.delete(room.jid);
  saveRooms();
  active = undefined;
  $('composer').hidden = true;
  $('messages').replaceChildren();
  $('title').textContent = 'Pick a contact or a room';
  $('occupants').textContent = '';
  renderContacts();
});

// --- conversations ---------------------------------------------------------------------------------

function conversationOf(jid, kind) {
  let conversation = conversations.get(jid);
  if (!conversation) {
    conversation = { jid, kind, messages: [], keys: new Set(), unread: 0, firstUnread: undefined, occupants: new Map(), joined: false };
    conversations.set(jid, conversation);
  }
  return conversation;
}

function addMessage(conversation, message) {
  if (message.keys.some((key) => conversation.keys.has(key))) {
    // Seen already: a room reflecting our own message confirms it.
    const known = conversation.messages.find((m) => m.keys.some((key) => message.keys.includes(key)));
    if (known?.pending) {
      known.pending = false;
      for (const key of message.keys) conversation.keys.add(key);
      if (active === conversation.jid) renderMessages(conversation);
    }
    return;
  }
  for (const key of message.keys) conversation.keys.add(key);
  // In time order: the archive's pages and live messages may interleave.
  let index = conversation.messages.length;
  while (index > 0 && conversation.messages[index - 1].time > message.time) index--;
  conversation.messages.splice(index, 0, message);
  if (message.live && !message.outgoing && (active !== conversation.jid || document.hidden)) {
    conversation.unread++;
    conversation.firstUnread ??= message;
  }
  if (active === conversation.jid) renderMessages(conversation);
  renderContacts();
}

function addNotice(conversation, text, error, button) {
  conversation.messages.push({ keys: [], notice: true, body: text, error, button, time: new Date() });
  if (active === conversation.jid) renderMessages(conversation);
  else if (error) $('side-error').textContent = text;
}

function open(jid) {
  const contact = contacts.get(jid);
  const conversation = conversations.get(jid) ?? conversationOf(jid, 'chat');
  active = jid;
  $('composer').hidden = false;
  $('leave').hidden = conversation.kind !== 'groupchat';
  $('attach').hidden = services.upload === undefined;
  $('composer-error').textContent = '';
  renderTitle(contact);
  renderMessages(conversation);
  conversation.unread = 0;
  renderContacts();
  $('body').focus();
}

function renderTitle() {
  const conversation = conversations.get(active);
  if (!conversation) return;
  if (conversation.kind === 'groupchat') {
    $('title').textContent = `${conversation.jid}${conversation.subject ? ` — ${conversation.subject}` : ''}`;
    $('occupants').textContent = conversation.joined ? `In the room: ${[...conversation.occupants.keys()].join(', ')}` : 'Not joined';
  } else {
    $('title').textContent = contacts.get(conversation.jid)?.name ?? conversation.jid;
    $('occupants').textContent = contacts.has(conversation.jid) ? '' : 'Not in your contacts';
  }
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

function renderMessages(conversation) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const items = [];
  for (const message of conversation.messages) {
    if (message === conversation.firstUnread && conversation.unread > 0) items.push(h('li', { class: 'divider' }, 'New messages'));
    items.push(renderMessage(message));
  }
  if (conversation.unread === 0) conversation.firstUnread = undefined;
  list.replaceChildren(...items);
  if (atBottom || conversation.unread === 0) list.scrollTop = list.scrollHeight;
}

function renderMessage(message) {
  const classes = [
    'message',
    message.outgoing && 'outgoing',
    message.notice && 'notice',
    message.error && 'failed',
    message.pending && 'pending',
  ];
  return h(
    'li',
    { class: classes.filter(Boolean).join(' '), data: message.id ? { id: message.id } : {} },
    h('time', { dateTime: message.time.toISOString(), title: dateFormat.format(message.time) }, timeFormat.format(message.time)),
    !message.notice && h('span', { class: 'sender' }, message.sender),
    h('div', { class: 'body' }, contentOf(message)),
    message.button && h('button', { type: 'button', onclick: message.button.action }, message.button.label),
    message.error && !message.notice && h('div', { class: 'error' }, message.error),
  );
}

const safeUrl = (url) => typeof url === 'string' && /^https?:\/\//i.test(url);
const imageUrl = (url) => /\.(png|jpe?g|gif|webp|avif|bmp)$/i.test(new URL(url).pathname);

function contentOf(message) {
  // A shared file (XEP-0066 out-of-band data, as XEP-0363 clients send it): pictures inline, other files as links.
  if (safeUrl(message.url) && (message.body === message.url || !message.body)) {
    if (imageUrl(message.url))
      return h('a', { href: message.url, target: '_blank', rel: 'noopener' }, h('img', { src: message.url, alt: 'picture' }));
    return h(
      'a',
      { href: message.url, target: '_blank', rel: 'noopener' },
      decodeURIComponent(new URL(message.url).pathname.split('/').pop()),
    );
  }
  return message.body;
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('body').value;
  if (!text.trim() || !active) return;
  sendMessage(conversations.get(active), text);
  $('body').value = '';
});

function sendMessage(conversation, body, url) {
  const id = xmpp.id();
  const groupchat = conversation.kind === 'groupchat';
  try {
    xmpp.send(
      x(
        'message',
        { to: conversation.jid, type: groupchat ? 'groupchat' : 'chat', id },
        x('body', {}, body),
        url && x('x', { xmlns: NS.oob }, x('url', {}, url)),
      ),
    );
  } catch (error) {
    $('composer-error').textContent = `Not sent: ${error.message}`;
    return;
  }
  const from = groupchat ? `${conversation.jid}/${conversation.nick}` : me;
  // A room reflects our message back (XEP-0045 §7.4): until then it is pending.
  addMessage(conversation, {
    keys: [`${from}|${id}`],
    id,
    sender: groupchat ? conversation.nick : 'me',
    outgoing: true,
    body,
    url,
    time: new Date(),
    live: true,
    pending: groupchat,
  });
}

// --- services: rooms and file upload (XEP-0363) --------------------------------------------------------------

async function discover() {
  const items = await xmpp.iq('get', domain, x('query', { xmlns: NS.items }));
  for (const item of child(items, 'query', NS.items)?.children ?? []) {
    const jid = item.getAttribute('jid');
    if (!jid) continue;
    const info = child(await xmpp.iq('get', jid, x('query', { xmlns: NS.info })).catch(() => undefined), 'query', NS.info);
    if (!info) continue;
    const features = [...info.getElementsByTagNameNS(NS.info, 'feature')].map((f) => f.getAttribute('var'));
    const identities = [...info.getElementsByTagNameNS(NS.info, 'identity')];
    if (identities.some((i) => i.getAttribute('category') === 'conference')) services.muc = jid;
    if (features.includes(NS.upload)) {
      services.upload = jid;
      for (const field of info.getElementsByTagNameNS('jabber:x:data', 'field')) {
        if (field.getAttribute('var') === 'max-file-size') services.maxFileSize = Number(childText(field, 'value'));
      }
      if (active) $('attach').hidden = false;
    }
  }
}

$('file').addEventListener('change', async () => {
  const file = $('file').files[0];
  $('file').value = '';
  const conversation = conversations.get(active);
  if (!file || !conversation) return;
  $('composer-error').textContent = '';
  if (services.maxFileSize && file.size > services.maxFileSize) {
    $('composer-error').textContent = `${file.name} is too large: at most ${services.maxFileSize} bytes`;
    return;
  }
  $('composer-error').textContent = `Uploading ${file.name}…`;
  try {
    const type = file.type || 'application/octet-stream';
    const answer = await xmpp.iq(
      'get',
      services.upload,
      x('request', { xmlns: NS.upload, filename: file.name, size: String(file.size), 'content-type': type }),
    );
    const slot = child(answer, 'slot', NS.upload);
    const put = child(slot, 'put', NS.upload);
    const get = child(slot, 'get', NS.upload)?.getAttribute('url');
    if (!put || !safeUrl(put.getAttribute('url')) || !safeUrl(get)) throw new Error('the upload service sent no usable slot');
    const headers = { 'content-type': type };
    for (const header of put.getElementsByTagNameNS(NS.upload, 'header')) {
      const name = header.getAttribute('name');
      if (['authorization', 'cookie', 'expires'].includes(name?.toLowerCase())) headers[name] = header.textContent;
    }
    const response = await fetch(put.getAttribute('url'), { method: 'PUT', headers, body: file });
    if (!response.ok) throw new Error(`the upload failed: HTTP ${response.status}`);
    $('composer-error').textContent = '';
    sendMessage(conversation, get, get);
  } catch (error) {
    $('composer-error').textContent = `Could not upload ${file.name}: ${error instanceof XmppError ? describe(error) : error.message}`;
  }
});

document.addEventListener('visibilitychange', () => {
  const conversation = conversations.get(active);
  if (!document.hidden && conversation && conversation.unread > 0) {
    renderMessages(conversation);
    conversation.unread = 0;
    renderContacts();
  }
});
