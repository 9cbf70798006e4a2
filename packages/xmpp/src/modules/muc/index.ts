// Multi-User Chat (XEP-0045 v1.35) on a domain of its own (`conference.example.com`), as Prosody's
// mod_muc: rooms created on join, configured through the owner's form, with affiliations and roles,
// history on join, the room's archive (XEP-0313 on the room JID), self-ping (XEP-0410), mediated
// invitations (XEP-0249's direct ones pass between accounts untouched), and persistent rooms in the
// server's durable store. Occupants leave when their session ends. On several processes (a server
// with a bus) a room is one room for the whole service, hosted by one process at a time (cluster.ts).

import { XmppConfigError } from '../../config-error.js';
import { type XmlElement, xml } from '../../element.js';
import type { ModuleApi, StanzaEvent, StanzaKind, XmppModule } from '../../module.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_RSM, NS_SID } from '../../namespaces.js';
import { parseXml } from '../../parse.js';
import { StanzaErrorException } from '../../stanza-error.js';
import type { JsonValue, KeyValueStore } from '../../stores/types.js';
import { buildRsmAnswer, parseRsm } from '../rsm.js';
import { MucCluster } from './cluster.js';
import { configFromJson, configToJson, defaultConfig, type RoomConfig } from './config.js';
import type { HistoryEntry } from './history.js';
import { mucOccupancyState } from './occupancy-state.js';
import { Room } from './room.js';
import { AFFILIATIONS, type Affiliation, type MucContext, type MucLimits, NS_MUC, type RoomSnapshot, type StoredRoom } from './types.js';

export type { AllowPm, RoomConfig, Whois } from './config.js';
export type { Affiliation, Role } from './types.js';

export interface MucOptions {
  /** The service's domain. Default `conference.${domain}`. */
  domain?: string;
  /** The service's name in disco (the server's disco#items and its own identity). Default `'Chatrooms'`. */
  name?: string;
  /** Who may create rooms, by bare JID. Default: accounts of this server. */
  mayCreate?: (bare: string) => boolean;
  /**
   * A new room is locked until its creator submits the configuration form (an empty form accepts
   * the defaults: an instant room), as XEP-0045 §10.1 and Prosody's `muc_room_locking`. `false`:
   * the first join creates a room others may enter at once. Default true.
   */
  lockNewRooms?: boolean;
  /** A locked room nobody configured is destroyed after this many ms. Default 300000 (Prosody's). */
  lockTimeoutMs?: number;
  /** The configuration new rooms start with (within the limits below). */
  roomDefaults?: Partial<RoomConfig>;
  /**
   * Rooms the service holds at most (persistent and temporary): past it, creating one is `resource-constraint`.
   * On several processes, the rooms of the whole service (read at most once a second). Default 10000.
   */
  maxRooms?: number;
  /**
   * Rooms one user may have created and still live: past it, `policy-violation`. On several processes, counted
   * over the whole service (read at most once a second). Default 100.
   */
  maxRoomsPerUser?: number;
  /** Rooms one user (bare JID) may sit in at once: past it, joining is `policy-violation`. Default 100. */
  maxJoinedRoomsPerUser?: number;
  /** Occupants of a room at most (the largest `muc#roomconfig_maxusers`). Default 1000. */
  maxUsers?: number;
  /** History messages a room keeps at most (the largest `muc#roomconfig_historylength`). Default 100. */
  maxHistoryLength?: number;
  /**
   * Characters of history a room keeps in memory at most (the oldest messages go first past it),
   * whatever its history length: bounds what one room's history costs. Default 262144.
   */
  maxHistoryChars?: number;
  /**
   * Characters of an occupant's presence (show, status, caps, …) at most: it goes to every
   * occupant and to every newcomer, so a larger one is refused with `policy-violation`. Default 16384.
   */
  maxPresenceChars?: number;
  /** Characters in a nickname at most: longer is `not-acceptable`. Default 64. */
  maxNickLength?: number;
  /** Characters in a subject at most: longer is `not-acceptable`. Default 1024. */
  maxSubjectLength?: number;
  /** Affiliations (owners, admins, members, outcasts) per room at most. Default 10000. */
  maxAffiliations?: number;
  /** Days a room's archived messages are kept; `null` keeps them forever. Default 365. */
  archiveRetentionDays?: number | null;
  /** The clock (ms since the epoch), for tests. */
  now?: () => number;
}

/** The MUC module, with its rooms readable (tests, admin tools). */
export interface MucModule extends XmppModule {
  /** The service's domain (known once set up). */
  readonly domain: string | undefined;
  /** Names of the rooms that exist now (on several processes: those this process holds). */
  rooms(): string[];
  /** Occupant count of a room, or undefined when it does not exist (on several processes: is not held here). */
  occupants(room: string): number | undefined;
}

const DAY_MS = 86_400_000;
/** Rooms listed in one disco#items answer at most (more with RSM paging). */
const MAX_LISTED = 1000;

export function muc(options: MucOptions = {}): MucModule {
  const limits: MucLimits = {
    maxRooms: positiveInteger('maxRooms', options.maxRooms, 10_000),
    maxRoomsPerUser: positiveInteger('maxRoomsPerUser', options.maxRoomsPerUser, 100),
    maxJoinedRoomsPerUser: positiveInteger('maxJoinedRoomsPerUser', options.maxJoinedRoomsPerUser, 100),
    maxUsers: positiveInteger('maxUsers', options.maxUsers, 1000),
    maxHistoryLength: positiveInteger('maxHistoryLength', options.maxHistoryLength, 100),
    maxNickLength: positiveInteger('maxNickLength', options.maxNickLength, 64),
    maxHistoryChars: positiveInteger('maxHistoryChars', options.maxHistoryChars, 262_144),
    maxSubjectLength: positiveInteger('maxSubjectLength', options.maxSubjectLength, 1024),
    maxAffiliations: positiveInteger('maxAffiliations', options.maxAffiliations, 10_000),
    maxNameLength: 256,
    maxDescriptionLength: 1024,
    maxPasswordLength: 256,
    maxInvitees: 20,
    maxSessionsPerOccupant: 20,
    maxPresenceChars: positiveInteger('maxPresenceChars', options.maxPresenceChars, 16_384),
  };
  const retentionDays = options.archiveRetentionDays === undefined ? 365 : options.archiveRetentionDays;
  if (retentionDays !== null && !(typeof retentionDays === 'number' && Number.isFinite(retentionDays) && retentionDays > 0)) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `muc: archiveRetentionDays must be a positive number of days or null, got ${JSON.stringify(retentionDays)}`,
    );
  }
  const lockTimeoutMs = positiveInteger('lockTimeoutMs', options.lockTimeoutMs, 300_000);
  const now = options.now ?? Date.now;
  const rooms = new Map<string, Room>();
  let serviceDomain: string | undefined;

  return {
    name: 'muc',
    get domain() {
      return serviceDomain;
    },
    rooms: () => [...rooms.keys()],
    occupants: (room) => rooms.get(room)?.occupants.size,
    setup(api: ModuleApi): void {
      const domain = options.domain ?? `conference.${api.domain}`;
      serviceDomain = domain;
      const store = api.keyValue('muc');
      const archive = api.archive('muc');
      const mayCreate = options.mayCreate ?? ((bare: string) => bare.endsWith(`@${api.domain}`));
      // Validated once against the limits (a default beyond a limit is a configuration error).
      const defaults = options.roomDefaults ?? {};
      const base = defaultConfig(defaults, limits);
      if (
        !(base.maxUsers >= 1 && base.maxUsers <= limits.maxUsers) ||
        !(base.historyLength >= 0 && base.historyLength <= limits.maxHistoryLength)
      ) {
        throw new XmppConfigError(
          'PB_ERR_XMPP_OPTION',
          'muc: roomDefaults.maxUsers and historyLength must be within maxUsers and maxHistoryLength',
        );
      }

      /** Real full JID → rooms it is in; bare JID → rooms it is in (how many of its sessions). */
      const sessionRooms = new Map<string, Set<string>>();
      const userRooms = new Map<string, Map<string, number>>();

      const ctx: MucContext = {
        api,
        service: domain,
        limits,
        archive,
        lockNewRooms: options.lockNewRooms !== false,
        lockTimeoutMs,
        defaults,
        now,
        joinedRooms: (bare) => {
          const here = userRooms.get(bare);
          if (spread === undefined) return here?.size ?? 0;
          // On several processes: the rooms held here, and those the user's sessions on every process sit in
          // (their directory records carry them, up to the directory's delay): one limit for the whole service.
          const names = new Set(here?.keys());
          const suffix = `@${domain}`;
          for (const session of api.sessionsOf(bare)) {
            for (const [room] of mucOccupancyState.peek(session)?.rooms ?? [])
              if (room.endsWith(suffix)) names.add(room.slice(0, -suffix.length));
          }
          return names.size;
        },
        renamed(room) {
          if (spread !== undefined) membersChanged(room);
        },
        track(real, bare, room, joined) {
          if (spread !== undefined) {
            membersChanged(room);
            const node = joined ? spread.cluster.nodeOf(real) : undefined;
            if (node !== undefined) lastNode.set(real, node);
          }
          let mine = sessionRooms.get(real);
          let theirs = userRooms.get(bare);
          if (joined) {
            if (mine === undefined) {
              mine = new Set();
              sessionRooms.set(real, mine);
            }
            if (mine.has(room)) return;
            mine.add(room);
            if (theirs === undefined) {
              theirs = new Map();
              userRooms.set(bare, theirs);
            }
            theirs.set(room, (theirs.get(room) ?? 0) + 1);
            return;
          }
          if (mine === undefined || !mine.delete(room)) return;
          if (mine.size === 0) sessionRooms.delete(real);
          const count = (theirs?.get(room) ?? 1) - 1;
          if (count > 0) theirs?.set(room, count);
          else theirs?.delete(room);
          if (theirs?.size === 0) userRooms.delete(bare);
        },
        async save(state, persistent) {
          await store.set('', state.name, persistent ? storedToJson(state) : undefined);
        },
        async destroyed(room) {
          room.stop();
          const spread = clustered();
          const gone = async (): Promise<void> => {
            // What is stored goes first: a room created anew under this name starts empty.
            try {
              await store.set('', room.name, undefined);
              await archive.delete(room.name);
            } finally {
              if (rooms.get(room.name) === room) rooms.delete(room.name);
              // On several processes: what a next holder would read goes too, and the claim.
              if (spread !== undefined && !(room as Room).detached) await spread.release(room.name, true);
            }
          };
          // Never while a stanza to this room name is being claimed or loaded on this process.
          await (spread === undefined ? gone() : spread.lock(room.name, gone));
        },
        async changed(name, snapshot) {
          const spread = clustered();
          const room = rooms.get(name);
          if (spread === undefined || room === undefined || room.detached) return;
          await spread.writeSnapshot(name, snapshot.stored.config.persistent ? undefined : snapshotToJson(snapshot));
          await spread.announce(listing(room));
        },
        remembered(name, entry, config) {
          if (!config.logging) void clustered()?.appendHistory(name, entry, config.historyLength);
        },
      };
      const listing = (room: Room) => ({
        name: room.name,
        title: room.config.name === '' ? room.name : room.config.name,
        public: room.config.public,
        locked: room.locked,
        creator: room.creator,
      });

      // ---- several processes -------------------------------------------------------------------
      // Created at the first need once the server has its cluster (made after the modules' setup).
      let spread: MucCluster | undefined;
      let sweepTimer: NodeJS.Timeout | undefined;
      const offs: Array<() => void> = [];
      /** Last process each occupant session (real JID) of a held room was seen on; those missing at the last sweep. */
      const lastNode = new Map<string, string>();
      let missing = new Set<string>();
      const clustered = (): MucCluster | undefined => {
        if (spread !== undefined) return spread;
        const cluster = api.server.cluster;
        if (cluster === undefined) return undefined;
        const ttlMs = cluster.sessionTtlMs;
        const made = new MucCluster(cluster, cluster.bus, ttlMs, domain, () => api.logger);
        spread = made;
        offs.push(
          cluster.onClaimLost((claim) => {
            const name = made.roomOfClaim(claim);
            if (name !== undefined) void made.lock(name, () => letGo(made, name));
          }),
          // The bus was away (undefined: messages may have been lost, a Redis restart may have emptied it).
          cluster.listen('muc', (data) => {
            if (data !== undefined) return;
            void made.rewrite((name) => {
              const room = rooms.get(name);
              if (room === undefined || room.config.logging) return undefined;
              return { entries: room.history, length: room.config.historyLength };
            });
          }),
          cluster.onNodeGone((node) => {
            made.nodeGone(node);
            sweep(made, node);
          }),
        );
        sweepTimer = setInterval(() => sweep(made, undefined), Math.max(ttlMs, 5000));
        sweepTimer.unref();
        return made;
      };
      // The cluster exists once the server's constructor has returned.
      queueMicrotask(() => clustered());

      /** Who sits in the rooms this process holds is written (once for the changes of one turn of the event loop) for their next holder. */
      const membersDue = new Set<string>();
      let membersTimer: NodeJS.Immediate | undefined;
      const membersChanged = (name: string): void => {
        membersDue.add(name);
        membersTimer ??= setImmediate(() => {
          membersTimer = undefined;
          const made = spread;
          for (const due of [...membersDue]) {
            membersDue.delete(due);
            const room = rooms.get(due);
            if (made === undefined || room === undefined || room.detached || room.destroyedRoom) continue;
            void made.writeMembers(
              due,
              [...room.byReal].map(([real, occupant]) => [real, occupant.nick] as const),
            );
          }
        });
      };

      /** A claim lost (another process took the room while the bus was away): stop serving it, without a word to its occupants. */
      const letGo = async (made: MucCluster, name: string): Promise<void> => {
        const room = rooms.get(name);
        if (room === undefined) return;
        api.logger.warn({ room: room.jid }, 'XMPP MUC: another process holds this room now: its stanzas go there');
        room.detach();
        rooms.delete(name);
        await made.release(name, false);
      };

      /**
       * Occupants whose session is on no process any more leave the rooms this process holds: at once
       * those last seen on a process found dead (`gone`), else those missing at two sweeps in a row
       * (a session just bound elsewhere may reach this process's directory a moment after its join).
       */
      const sweep = (made: MucCluster, gone: string | undefined): void => {
        const seen = new Set<string>();
        const nextMissing = new Set<string>();
        for (const room of [...rooms.values()]) {
          for (const real of [...room.byReal.keys()]) {
            seen.add(real);
            const node = made.cluster.nodeOf(real);
            if (node !== undefined) {
              lastNode.set(real, node);
              continue;
            }
            const drop = gone === undefined ? missing.has(real) : lastNode.get(real) === gone;
            if (!drop) {
              nextMissing.add(real);
              continue;
            }
            room
              .run(() => room.leave(real))
              .catch((error: unknown) => api.logger.error({ err: error, room: room.jid }, 'XMPP MUC: leaving a room failed'));
          }
        }
        for (const real of [...lastNode.keys()]) if (!seen.has(real)) lastNode.delete(real);
        if (gone === undefined) missing = nextMissing;
      };

      // Persistent rooms are read on the first stanza to the service (setup is synchronous).
      let loading: Promise<void> | undefined;
      const ensureLoaded = (): Promise<void> => {
        // A failed read is tried again on the next stanza (this one is answered internal-server-error).
        loading ??= loadRooms(store, ctx, rooms).catch((error: unknown) => {
          loading = undefined;
          throw error;
        });
        return loading;
      };

      api.domainService(domain, {
        name: options.name ?? 'Chatrooms',
        async stanza(event, kind) {
          const spread = clustered();
          if (spread === undefined) await ensureLoaded();
          try {
            if (spread === undefined) await roomStanza(event, kind);
            else await clusteredStanza(spread, event, kind);
          } catch (error) {
            if (!(error instanceof StanzaErrorException)) throw error;
            // Never an error to an error or to a result (RFC 6120 §8.3.1).
            const type = event.stanza.attr('type');
            if (type === 'error' || (kind === 'iq' && type === 'result')) return;
            await api.route(errorReply(event.stanza, error, event.to.bare, kind === 'presence' && type === undefined));
          }
        },
      });

      /** §7.2.1: a join names a nick, of bounded length. */
      const checkJoin = (event: StanzaEvent, kind: StanzaKind): void => {
        if (kind === 'presence' && event.stanza.attr('type') === undefined) {
          if (event.to.isBare) throw new StanzaErrorException('jid-malformed', 'a room JID with a nickname is needed to join');
          checkNick(event.to.resource, limits);
        }
      };

      const roomStanza = async (event: StanzaEvent, kind: StanzaKind): Promise<void> => {
        if (event.to.local === '') return serviceStanza(event, kind);
        const type = event.stanza.attr('type');
        let room = rooms.get(event.to.local);
        let created = false;
        checkJoin(event, kind);
        if (room === undefined) {
          if (kind === 'presence' && !event.to.isBare && type === undefined) {
            room = createRoom(event);
            created = true;
          } else if (type === 'error' || type === 'result' || (kind === 'presence' && type !== undefined)) {
            return;
          } else {
            throw new StanzaErrorException('item-not-found', 'no such room');
          }
        }
        const target = room;
        await target.run(async () => {
          try {
            await target.handle(event, kind, created);
          } catch (error) {
            // A room whose creating join was refused (a limit) is not left behind.
            if (created && target.occupants.size === 0) await target.destroy(undefined, undefined, false);
            throw error;
          }
        });
      };

      /**
       * On several processes, what `maxRooms` and `maxRoomsPerUser` count: the rooms every process holds
       * (their directory entries, with their creators), this process's, and the persistent rooms in the
       * store that nobody holds now (their creators read from the store once, then remembered: a stored
       * room's creator does not change while its name exists). Read at most once a second: a client whose
       * every join names a new room costs the bus and the store one listing a second, not one per stanza;
       * what other processes create within that second is seen at the next reading.
       */
      let countsCache: { at: number; counts: ServiceCounts } | undefined;
      const storedCreators = new Map<string, string>();
      const serviceCounts = async (made: MucCluster): Promise<ServiceCounts> => {
        if (countsCache !== undefined && Date.now() - countsCache.at < COUNTS_MAX_AGE_MS) return countsCache.counts;
        const creators = new Map<string, string | undefined>();
        for (const room of await made.listed()) creators.set(room.name, room.creator);
        for (const room of rooms.values()) creators.set(room.name, room.creator);
        const fallback = defaultConfig(ctx.defaults, ctx.limits);
        const stored = await store.keys('');
        const storedNames = new Set(stored);
        for (const name of storedCreators.keys()) if (!storedNames.has(name)) storedCreators.delete(name);
        for (const name of stored) {
          if (creators.has(name)) continue;
          let creator = storedCreators.get(name);
          if (creator === undefined) {
            creator = storedFromJson(name, await store.get('', name), fallback)?.creator;
            if (creator !== undefined) storedCreators.set(name, creator);
          }
          creators.set(name, creator);
        }
        const byCreator = new Map<string, number>();
        for (const creator of creators.values()) if (creator !== undefined) byCreator.set(creator, (byCreator.get(creator) ?? 0) + 1);
        const counts = { total: creators.size, byCreator };
        countsCache = { at: Date.now(), counts };
        return counts;
      };

      /**
       * On several processes: a room this process holds is served here; another's, forwarded to its
       * process; one nobody holds is claimed, then loaded (the store, or what its last holder left on
       * the bus) or created by a join.
       */
      const clusteredStanza = async (made: MucCluster, event: StanzaEvent, kind: StanzaKind): Promise<void> => {
        if (event.to.local === '') return serviceStanza(event, kind);
        checkJoin(event, kind);
        const name = event.to.local;
        const type = event.stanza.attr('type');
        const join = kind === 'presence' && type === undefined && !event.to.isBare;
        let room = rooms.get(name);
        let created = false;
        if (room === undefined) {
          const found = await made.lock(name, async (): Promise<{ room: Room; created: boolean } | { node: string } | undefined> => {
            const here = rooms.get(name);
            if (here !== undefined) return { room: here, created: false };
            // A room found missing a moment ago: answered here (a client cannot make every stanza cost the bus a claim and a load).
            if (!join && made.missing(name)) return undefined;
            const node = await made.holder(name);
            if (node !== made.nodeId) return { node };
            const loaded = await loadRoom(made, name);
            if (loaded !== undefined) {
              rooms.set(name, loaded);
              await made.announce(listing(loaded));
              return { room: loaded, created: false };
            }
            if (join) {
              try {
                const fresh = createRoom(event, await serviceCounts(made));
                await ctx.changed(name, { stored: fresh.stored(), locked: fresh.locked });
                return { room: fresh, created: true };
              } catch (error) {
                await made.release(name, true);
                throw error;
              }
            }
            // No such room: nothing held (nothing of it on the bus either: no snapshot was found).
            made.remember(name);
            await made.release(name, false);
            return undefined;
          });
          if (found === undefined) {
            if (type === 'error' || type === 'result' || kind === 'presence') return;
            throw new StanzaErrorException('item-not-found', 'no such room');
          }
          if ('node' in found) return made.forward(found.node, event.stanza);
          room = found.room;
          created = found.created;
        }
        const target = room;
        let moved = false;
        await target.run(async () => {
          // Another process took the room meanwhile: the stanza goes there.
          if (target.detached) {
            moved = true;
            return;
          }
          try {
            await target.handle(event, kind, created);
          } catch (error) {
            if (created && target.occupants.size === 0) await target.destroy(undefined, undefined, false);
            throw error;
          }
        });
        if (moved) await clusteredStanza(made, event, kind);
      };

      /** A room nobody holds, as its last holder left it: the store (persistent) or its snapshot on the bus (temporary). */
      const loadRoom = async (made: MucCluster, name: string): Promise<Room | undefined> => {
        const fallback = defaultConfig(ctx.defaults, ctx.limits);
        let stored = storedFromJson(name, await store.get('', name), fallback);
        let locked = false;
        let snapshot: string | undefined;
        if (stored === undefined) {
          snapshot = await made.readSnapshot(name);
          const parsed = snapshot === undefined ? undefined : snapshotFromJson(name, snapshot, fallback);
          if (parsed === undefined) return undefined;
          stored = parsed.stored;
          locked = parsed.locked;
        }
        const room = new Room(ctx, name, stored.creator, stored);
        const entries = await made.roster(name);
        const members = await made.readMembers(name);
        if (!room.config.persistent && entries.length === 0) {
          // A temporary room nobody sits in any more is gone (its holder would have destroyed it).
          await archive.delete(name);
          await made.forget(name);
          return undefined;
        }
        if (room.config.logging) await seedFromArchive(ctx, room);
        else room.seedHistory(await made.readHistory(name, room.config.historyLength));
        room.restore(entries);
        // Those the last holder had and whose session is gone are seen leaving.
        await room.run(() => room.departed(members));
        if (locked) room.lock();
        made.holding(name, snapshot);
        api.logger.info({ room: room.jid, occupants: entries.length }, 'XMPP MUC: this process holds the room now');
        return room;
      };

      /**
       * `counts`: on several processes, the rooms of the whole service ({@link serviceCounts}); alone,
       * this process's rooms are all of them (persistent ones are loaded at start).
       */
      const createRoom = (event: StanzaEvent, counts?: ServiceCounts): Room => {
        const bare = event.from.bare;
        if (!mayCreate(bare)) throw new StanzaErrorException('not-allowed', 'you may not create rooms on this service');
        let total = rooms.size;
        let mine = 0;
        if (counts !== undefined) {
          total = counts.total;
          mine = counts.byCreator.get(bare) ?? 0;
        } else {
          for (const room of rooms.values()) if (room.creator === bare) mine++;
        }
        if (total >= limits.maxRooms) throw new StanzaErrorException('resource-constraint', 'this service holds no more rooms');
        if (mine >= limits.maxRoomsPerUser)
          throw new StanzaErrorException('policy-violation', `you created ${limits.maxRoomsPerUser} rooms already`);
        if (counts !== undefined) {
          // Counted at once: this process's next creations within the counts' second see this one.
          counts.total++;
          counts.byCreator.set(bare, mine + 1);
        }
        const room = new Room(ctx, event.to.local, bare);
        room.affiliations.set(bare, 'owner');
        if (ctx.lockNewRooms) room.lock();
        rooms.set(room.name, room);
        return room;
      };

      /**
       * The public rooms: this process's; on several processes, those any process holds (their
       * holders list them on the bus) and the persistent ones in the store nobody holds now.
       */
      const listedRooms = async (): Promise<Array<{ jid: string; title: string }>> => {
        const made = clustered();
        if (made === undefined) {
          return [...rooms.values()]
            .filter((room) => room.config.public && !room.locked && !room.destroyedRoom)
            .map((room) => ({ jid: room.jid, title: listing(room).title }));
        }
        const found = new Map<string, { jid: string; title: string } | undefined>();
        for (const room of await made.listed())
          found.set(room.name, room.public && !room.locked ? { jid: `${room.name}@${domain}`, title: room.title } : undefined);
        for (const room of rooms.values()) {
          const listed = listing(room);
          found.set(room.name, listed.public && !listed.locked && !room.destroyedRoom ? { jid: room.jid, title: listed.title } : undefined);
        }
        const fallback = defaultConfig(ctx.defaults, ctx.limits);
        for (const name of await store.keys('')) {
          if (found.has(name)) continue;
          const stored = storedFromJson(name, await store.get('', name), fallback);
          if (stored?.config.public === true)
            found.set(name, { jid: `${name}@${domain}`, title: stored.config.name === '' ? name : stored.config.name });
        }
        return [...found.values()].filter((room): room is { jid: string; title: string } => room !== undefined);
      };

      const serviceStanza = async (event: StanzaEvent, kind: StanzaKind): Promise<void> => {
        const { stanza } = event;
        const type = stanza.attr('type');
        if (kind !== 'iq') {
          if (kind === 'message' && type !== 'error') throw new StanzaErrorException('service-unavailable');
          return;
        }
        if (type !== 'get' && type !== 'set') return;
        const payload = stanza.getChildren()[0];
        let answer: ReturnType<typeof xml> | undefined;
        if (type === 'get' && payload?.local === 'query' && payload.xmlns === NS_DISCO_INFO && payload.attr('node') === undefined) {
          answer = xml(
            'query',
            { xmlns: NS_DISCO_INFO },
            xml('identity', { category: 'conference', type: 'text', name: options.name ?? 'Chatrooms' }),
            ...[NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING].map((feature) => xml('feature', { var: feature })),
          );
        } else if (type === 'get' && payload?.local === 'query' && payload.xmlns === NS_DISCO_ITEMS && payload.attr('node') === undefined) {
          const listed = await listedRooms();
          listed.sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
          // Paged with RSM (XEP-0059 §2): at most 1000 rooms in one answer.
          const set = payload.getChild('set', NS_RSM);
          const rsm = parseRsm(set, { defaultMax: MAX_LISTED, maxCap: MAX_LISTED });
          let from = 0;
          let to = listed.length;
          if (rsm.after !== undefined) from = listed.findIndex((room) => room.jid > (rsm.after as string));
          if (from === -1) from = listed.length;
          if (rsm.before !== undefined && rsm.before !== '') to = listed.findIndex((room) => room.jid >= (rsm.before as string));
          if (to === -1) to = listed.length;
          if (rsm.index !== undefined) from = Math.min(rsm.index, listed.length);
          const page =
            rsm.before !== undefined && rsm.after === undefined
              ? listed.slice(Math.max(from, to - rsm.max), to)
              : listed.slice(from, Math.min(to, from + rsm.max));
          answer = xml(
            'query',
            { xmlns: NS_DISCO_ITEMS },
            ...page.map((room) => xml('item', { jid: room.jid, name: room.title })),
            set === undefined && page.length === listed.length
              ? undefined
              : buildRsmAnswer({
                  first: page[0]?.jid,
                  firstIndex: page.length > 0 ? listed.indexOf(page[0] as (typeof listed)[number]) : undefined,
                  last: page[page.length - 1]?.jid,
                  count: listed.length,
                }),
          );
        } else if (type === 'get' && payload?.local === 'ping' && payload.xmlns === NS_PING) {
          answer = undefined;
        } else {
          throw new StanzaErrorException('service-unavailable');
        }
        await api.route(xml('iq', { type: 'result', id: stanza.attr('id'), from: domain, to: event.from.toString() }, answer));
      };

      // Occupants leave when their session ends for good, or when it sends unavailable presence to
      // everyone (RFC 6121 §4.6.3: directed presences end with it).
      // On several processes, the rooms other processes hold learn it from an unavailable presence
      // this process sends them on the session's behalf (the rooms it sits in, as their
      // self-presences told it).
      const leaveAll = (real: string): void => {
        const names = sessionRooms.get(real);
        const elsewhere = spread?.joinedBy(real);
        for (const name of [...(names ?? [])]) {
          const room = rooms.get(name);
          if (room === undefined) {
            names?.delete(name);
            continue;
          }
          room
            .run(() => room.leave(real))
            .catch((error: unknown) => api.logger.error({ err: error, room: room.jid }, 'XMPP MUC: leaving a room failed'));
        }
        for (const [name, nick] of [...(elsewhere ?? [])]) {
          if (names?.has(name) === true) continue;
          const room = rooms.get(name);
          if (room !== undefined) {
            room
              .run(() => room.leave(real))
              .catch((error: unknown) => api.logger.error({ err: error, room: room.jid }, 'XMPP MUC: leaving a room failed'));
            continue;
          }
          api
            .route(xml('presence', { from: real, to: `${name}@${domain}/${nick}`, type: 'unavailable' }))
            .catch((error: unknown) => api.logger.warn({ err: error, room: name }, 'XMPP MUC: could not tell a room a session left'));
        }
      };
      api.hook('session/closed', ({ session }) => {
        if (session.jid === undefined) return;
        const real = session.jid.toString();
        leaveAll(real);
        spread?.ended(real);
      });
      // A session resumed from another process's journal: back in the occupant entries of its rooms.
      api.hook('session/resumed', ({ session }) => {
        spread?.resumed(session);
      });
      // One of this process's sessions resumed on another: its rooms are that process's to keep now.
      api.hook('session/moved', ({ session }) => {
        if (session.jid !== undefined) spread?.moved(session.jid.toString());
      });
      // What rooms tell this process's sessions (on several processes: the occupants it keeps on the bus).
      api.outbound((stanza, session) => {
        if (spread !== undefined && stanza.local === 'presence') spread.observe(stanza, session);
        return stanza;
      }, 10_000);
      api.hook('presence/in', (event) => {
        if (event.stanza.attr('to') === undefined && event.stanza.attr('type') === 'unavailable') leaveAll(event.from.toString());
      });

      if (retentionDays !== null) {
        const timer = setInterval(() => {
          archive
            .expire(now() - retentionDays * DAY_MS)
            .catch((error: unknown) => api.logger.error({ err: error }, 'XMPP MUC: expiring room archives failed'));
        }, 3_600_000);
        timer.unref();
        api.onStop(() => clearInterval(timer));
      }
      api.onStop(async () => {
        for (const room of rooms.values()) room.stop();
        if (spread === undefined) return;
        clearInterval(sweepTimer);
        if (membersTimer !== undefined) clearImmediate(membersTimer);
        for (const off of offs.splice(0)) off();
        spread.stop();
        // Others take the rooms over at once (their occupants on other processes stay in them).
        for (const name of [...rooms.keys()]) await spread.release(name, false);
      });
    },
  };
}

/**
 * An error from the service, `by` the room (XEP-0045 §7.2, XEP-0410 §3.3: clients tell the room's
 * errors from their peers'); to a join or presence change with `<x xmlns='…muc'/>` beside it (§7.2 Example 23).
 */
function errorReply(stanza: XmlElement, error: StanzaErrorException, by: string, join: boolean): XmlElement {
  const reply = error.reply(stanza);
  reply.getChild('error')?.setAttr('by', by);
  if (join) reply.children.unshift(xml('x', { xmlns: NS_MUC }));
  return reply;
}

/** §7.2: a nickname is a resourcepart (non-empty, not only spaces) of bounded length. */
function checkNick(nick: string, limits: MucLimits): void {
  if (nick.trim() === '') throw new StanzaErrorException('jid-malformed', 'a nickname is needed');
  if ([...nick].length > limits.maxNickLength)
    throw new StanzaErrorException('not-acceptable', `a nickname has at most ${limits.maxNickLength} characters`);
}

/** Rooms of the whole service, for the creation limits on several processes. */
interface ServiceCounts {
  total: number;
  byCreator: Map<string, number>;
}

/** How long one reading of the service's room counts serves (ms). */
const COUNTS_MAX_AGE_MS = 1000;

async function loadRooms(store: KeyValueStore, ctx: MucContext, rooms: Map<string, Room>): Promise<void> {
  const fallback = defaultConfig(ctx.defaults, ctx.limits);
  for (const name of await store.keys('')) {
    const stored = storedFromJson(name, await store.get('', name), fallback);
    if (stored === undefined || rooms.has(name)) continue;
    const room = new Room(ctx, name, stored.creator, stored);
    await seedFromArchive(ctx, room);
    rooms.set(name, room);
  }
}

/** The history a restarted (or taken over) room offers: its newest archived messages. */
async function seedFromArchive(ctx: MucContext, room: Room): Promise<void> {
  if (room.config.historyLength <= 0) return;
  const { items } = await ctx.archive.query(room.name, { before: '', max: room.config.historyLength });
  const entries: HistoryEntry[] = [];
  for (const item of items) {
    const message = parseXml(item.xml);
    if (message === undefined) continue;
    message.children.push(xml('stanza-id', { xmlns: NS_SID, by: room.jid, id: item.id }));
    entries.push({ message, when: item.when, chars: item.xml.length });
  }
  room.seedHistory(entries);
}

/** A temporary room's state, as its holder keeps it on the bus. */
function snapshotToJson(snapshot: RoomSnapshot): string {
  return JSON.stringify({ room: storedToJson(snapshot.stored), locked: snapshot.locked });
}

function snapshotFromJson(name: string, text: string, fallback: RoomConfig): RoomSnapshot | undefined {
  let parsed: { room?: JsonValue; locked?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    return undefined;
  }
  const stored = storedFromJson(name, parsed.room, fallback);
  if (stored === undefined) return undefined;
  return { stored: { ...stored, config: { ...stored.config, persistent: false } }, locked: parsed.locked === true };
}

function storedToJson(state: StoredRoom): JsonValue {
  return {
    config: configToJson(state.config),
    affiliations: state.affiliations,
    subject: state.subject === undefined ? null : { ...state.subject },
    creator: state.creator,
    created: state.created,
  };
}

function storedFromJson(name: string, value: JsonValue | undefined, fallback: RoomConfig): StoredRoom | undefined {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const affiliations: Record<string, Affiliation> = {};
  const stored = value.affiliations;
  if (stored !== null && typeof stored === 'object' && !Array.isArray(stored)) {
    for (const [jid, affiliation] of Object.entries(stored)) {
      if (typeof affiliation === 'string' && (AFFILIATIONS as readonly string[]).includes(affiliation) && affiliation !== 'none')
        affiliations[jid] = affiliation as Affiliation;
    }
  }
  const subject = value.subject;
  return {
    name,
    config: { ...configFromJson(value.config, fallback), persistent: true },
    affiliations,
    subject:
      subject !== null && typeof subject === 'object' && !Array.isArray(subject) && typeof subject.text === 'string'
        ? {
            text: subject.text,
            nick: typeof subject.nick === 'string' ? subject.nick : '',
            when: typeof subject.when === 'number' ? subject.when : 0,
          }
        : undefined,
    creator: typeof value.creator === 'string' ? value.creator : '',
    created: typeof value.created === 'number' ? value.created : 0,
  };
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `muc: ${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}
