import { PortbindError } from '@portbind/core';

/** A configuration error of the XMPP server (bad domain, no TLS, a bad option, unusable storage). */
export class XmppConfigError extends PortbindError {}
