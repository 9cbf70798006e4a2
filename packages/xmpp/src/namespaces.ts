export const NS_CLIENT = 'jabber:client';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_PING = 'urn:xmpp:ping';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_CARBONS = 'urn:xmpp:carbons:2';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_HINTS = 'urn:xmpp:hints';
export const NS_VCARD = 'vcard-temp';
export const NS_REGISTER = 'jabber:iq:register';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_ROSTER_VER = 'urn:xmpp:features:rosterver';
export const NS_DELAY = 'urn:xmpp:delay';
// Stream management (XEP-0198) and client state indication (XEP-0352).
export const NS_SM = 'urn:xmpp:sm:3';
export const NS_CSI = 'urn:xmpp:csi:0';
// Message archive (XEP-0313), result set management (XEP-0059), stanza ids (XEP-0359), data forms (XEP-0004).
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_MAM_EXTENDED = 'urn:xmpp:mam:2#extended';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_DATA = 'jabber:x:data';
// PubSub (XEP-0060), PEP (XEP-0163) and what rides on it.
export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
export const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const NS_PUBSUB_OWNER = 'http://jabber.org/protocol/pubsub#owner';
export const NS_PUBSUB_ERRORS = 'http://jabber.org/protocol/pubsub#errors';
export const NS_PUBSUB_PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';
export const NS_CAPS = 'http://jabber.org/protocol/caps';
export const NS_AVATAR_DATA = 'urn:xmpp:avatar:data';
export const NS_AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
export const NS_NICK = 'http://jabber.org/protocol/nick';
export const NS_BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
export const NS_BOOKMARKS_LEGACY = 'storage:bookmarks';
export const NS_PRIVATE = 'jabber:iq:private';
export const NS_VCARD_UPDATE = 'vcard-temp:x:update';
export const NS_VCARD4_PEP = 'urn:xmpp:pep-vcard-conversion:0';
// Blocking (XEP-0191) and small queries: version (XEP-0092), time (XEP-0202), last activity (XEP-0012).
export const NS_BLOCKING = 'urn:xmpp:blocking';
export const NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';
export const NS_VERSION = 'jabber:iq:version';
export const NS_TIME = 'urn:xmpp:time';
export const NS_LAST = 'jabber:iq:last';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
