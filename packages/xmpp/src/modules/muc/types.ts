import type { XmlElement } from '../../element.js';
import type { ModuleApi } from '../../module.js';
import type { ArchiveStore } from '../../stores/types.js';
import type { ConfigLimits, RoomConfig } from './config.js';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_STABLE_ID = 'http://jabber.org/protocol/muc#stable_id';
export const NS_MUC_SELF_PING = 'http://jabber.org/protocol/muc#self-ping-optimization';
export const NS_CONFERENCE = 'jabber:x:conference';

export type Affiliation = 'owner' | 'admin' | 'member' | 'outcast' | 'none';
export type Role = 'moderator' | 'participant' | 'visitor' | 'none';

export const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'outcast', 'none'];
export const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];

/** Higher is more privileged (outcast lowest). */
export const AFFILIATION_RANK: Record<Affiliation, number> = { outcast: -1, none: 0, member: 1, admin: 2, owner: 3 };
export const ROLE_RANK: Record<Role, number> = { none: 0, visitor: 1, participant: 2, moderator: 3 };

/** The limits of a MUC service (see MucOptions). */
export interface MucLimits extends ConfigLimits {
  maxRooms: number;
  maxRoomsPerUser: number;
  maxJoinedRoomsPerUser: number;
  maxNickLength: number;
  maxHistoryChars: number;
  maxSubjectLength: number;
  maxAffiliations: number;
  maxInvitees: number;
  maxSessionsPerOccupant: number;
  maxPresenceChars: number;
}

/** What a room needs from its service. */
export interface MucContext {
  readonly api: ModuleApi;
  /** The service's domain: `conference.example.com`. */
  readonly service: string;
  readonly limits: MucLimits;
  readonly archive: ArchiveStore;
  readonly lockNewRooms: boolean;
  readonly lockTimeoutMs: number;
  readonly defaults: Partial<RoomConfig>;
  now(): number;
  /** Rooms this bare JID sits in, for the per-user cap. */
  joinedRooms(bare: string): number;
  /** A real full JID joined (or left, `false`) a room. */
  track(real: string, bare: string, room: string, joined: boolean): void;
  /** An occupant changed its nick (on several processes, who sits in the room is written again). */
  renamed(room: string): void;
  /** Write (or, when not persistent, delete) a room's durable state. */
  save(state: StoredRoom, persistent: boolean): Promise<void>;
  /** The room is gone: out of the service, its stored state and archive deleted. */
  destroyed(room: { readonly name: string; stop(): void }): Promise<void>;
  /**
   * The room's state changed (configuration, affiliations, subject, lock): on several processes
   * what the next holder of a temporary room reads is written again. Nothing on one process.
   */
  changed(name: string, snapshot: RoomSnapshot): Promise<void>;
  /**
   * A message was kept for history: on several processes, also where the room's next holder reads it
   * (the bus, for rooms that do not archive; not waited for: the bus keeps the order of one process's writes).
   */
  remembered(name: string, entry: { message: XmlElement; when: number; chars: number }, config: RoomConfig): void;
}

/** What another process needs to take a room over (with its occupants and history, kept apart). */
export interface RoomSnapshot {
  stored: StoredRoom;
  /** Created and not configured yet. */
  locked: boolean;
}

/** An occupant's session as its own process keeps it on the bus (what a room's next holder rebuilds its roster from). */
export interface OccupantEntry {
  /** The real full JID. */
  real: string;
  nick: string;
  role: Role;
  /** Its presence as the room shows it (children of `<presence/>`, without the MUC payload). */
  presence: XmlElement;
}

/** What is kept of a persistent room in the durable store. */
export interface StoredRoom {
  name: string;
  config: RoomConfig;
  affiliations: Record<string, Affiliation>;
  subject: { text: string; nick: string; when: number } | undefined;
  creator: string;
  created: number;
}

/** A joined occupant: one nick, one bare JID, one or more sessions (XEP-0045 §7.2: multi-session nicks, as Prosody). */
export interface Occupant {
  nick: string;
  bare: string;
  role: Role;
  /** Real full JID → the presence it last sent (its children, without the MUC payloads). */
  sessions: Map<string, XmlElement>;
  /** The real full JID whose presence is shown (the last one that sent presence). */
  primary: string;
}
