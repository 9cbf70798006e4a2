import type { XmppModule } from '../module.js';
import { account } from './account.js';
import { blocking } from './blocking.js';
import { bookmarks } from './bookmarks.js';
import { caps } from './caps.js';
import { carbons } from './carbons.js';
import { csi } from './csi.js';
import { disco } from './disco.js';
import { im } from './im.js';
import { lastActivity } from './last.js';
import { mam } from './mam.js';
import { pep } from './pep.js';
import { legacySession, ping } from './ping.js';
import { privateStorage } from './private.js';
import { smacks } from './smacks.js';
import { time } from './time.js';
import { vcard } from './vcard.js';
import { vcardAvatar } from './vcard-avatar.js';
import { version } from './version.js';

export { type AccountOptions, account } from './account.js';
export { type BlockingOptions, blocking, type PresenceSubscription, type SubscriptionLookup } from './blocking.js';
export { type BookmarksOptions, bookmarks } from './bookmarks.js';
export { type CapsOptions, caps, capsVerification, type EntityCaps, entityCapsOf } from './caps.js';
export { carbons } from './carbons.js';
export {
  COMPONENTS,
  type ComponentsModule,
  type ComponentsOptions,
  components,
  NS_COMPONENT,
  parseComponentSecrets,
} from './component.js';
export { type CsiOptions, csi } from './csi.js';
export { disco } from './disco.js';
export { type ImOptions, im, type RosterItem } from './im.js';
export { type LastActivityOptions, lastActivity } from './last.js';
export { type MamDefaultPolicy, type MamModule, type MamOptions, mam } from './mam.js';
export {
  type Affiliation,
  type AllowPm,
  type MucModule,
  type MucOptions,
  muc,
  type Role,
  type RoomConfig,
  type Whois,
} from './muc/index.js';
export { type Pep, type PepOptions, type PepPublishEvent, pep, pepOf } from './pep.js';
export { legacySession, ping } from './ping.js';
export { type PrivateOptions, privateStorage, privateStorageHandler } from './private.js';
export type { NodeConfig } from './pubsub/config.js';
export type { PubSubChange } from './pubsub/service.js';
export { NS_PUSH, NS_PUSH_SUMMARY, PUSH, type PushOptions, push } from './push.js';
export { type SmacksOptions, smacks } from './smacks.js';
export { type TimeOptions, time } from './time.js';
export { type UploadModule, type UploadOptions, upload } from './upload.js';
export { type VcardOptions, vcard } from './vcard.js';
export { type VcardAvatarOptions, vcardAvatar } from './vcard-avatar.js';
export { type VersionOptions, version } from './version.js';

/**
 * The modules of a modern server (XEP-0479's Core, IM and Mobile rows), each with its defaults:
 * instant messaging and presence with offline storage, carbons, vCard, service discovery, ping,
 * stream management, client state indication, the message archive, PEP with entity capabilities,
 * private storage, bookmarks, vCard avatars, blocking, version, time, last activity and in-band
 * account management. `xmppServer()` uses them unless given `modules`; to change one, filter it out
 * by name and add your own configuration of it:
 *
 *     modules: [...defaultModules().filter((m) => m.name !== 'mam'), mam({ retentionDays: 30 })]
 */
export function defaultModules(): XmppModule[] {
  return [
    im(),
    carbons(),
    vcard(),
    disco(),
    ping(),
    legacySession(),
    smacks(),
    csi(),
    mam(),
    caps(),
    pep(),
    privateStorage(),
    bookmarks(),
    vcardAvatar(),
    blocking(),
    version(),
    time(),
    lastActivity(),
    account(),
  ];
}
