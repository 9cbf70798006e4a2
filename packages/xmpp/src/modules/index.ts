import type { XmppModule } from '../module.js';
import { carbons } from './carbons.js';
import { disco } from './disco.js';
import { im } from './im.js';
import { legacySession, ping } from './ping.js';
import { vcard } from './vcard.js';

export { carbons } from './carbons.js';
export { disco } from './disco.js';
export { type ImOptions, im, type RosterItem } from './im.js';
export { legacySession, ping } from './ping.js';
export { type VcardOptions, vcard } from './vcard.js';

/**
 * The modules of a modern server, each with its defaults: instant messaging and presence with
 * offline storage, carbons, vCard, service discovery, ping. `xmppServer()` uses them unless given
 * `modules`; to change one, filter it out by name and add your own configuration of it.
 */
export function defaultModules(): XmppModule[] {
  return [im(), carbons(), vcard(), disco(), ping(), legacySession()];
}
