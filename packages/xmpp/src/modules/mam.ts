import { randomBytes } from 'node:crypto';
import { XmppConfigError } from '../config-error.js';
import { escapeAttribute, XmlElement, type XmlNode, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { IqContext, ModuleApi, StanzaEvent, XmppModule } from '../module.js';
import { NS_CLIENT, NS_DELAY, NS_FORWARD, NS_HINTS, NS_MAM, NS_MAM_EXTENDED, NS_SID } from '../namespaces.js';
import { parseXml } from '../parse.js';
import { StanzaErrorException } from '../stanza-error.js';
import type { ArchiveItem, ArchiveQuery, ArchiveStore, JsonValue, KeyValueStore } from '../stores/types.js';
import { buildDataForm, DataFormError, parseDataForm } from './data-form.js';
import { buildRsmAnswer, parseRsm } from './rsm.js';

// Message Archive Management (XEP-0313 v1.1, urn:xmpp:mam:2) for one-to-one chat, as Prosody's
// mod_mam does it: every chat/normal message with content is archived for the sender and for the
// recipient (each account's own archive, `with` the other party's bare JID); the recipient's copy
// carries a stanza id (XEP-0359) naming where it is stored. The account queries its archive on its
// own bare JID with a data form (with/start/end, and the #extended before-id/after-id/ids), pages
// with RSM (XEP-0059), and sets preferences (always/never/roster). Old items expire after the
// retention period.

/** Who gets archived by default (XEP-0313 §6: the `default` of `<prefs/>`). */
export type MamDefaultPolicy = 'always' | 'never' | 'roster';

export interface MamOptions {
  /** Days an archived message is kept; `null` keeps them forever. Default 365. */
  retentionDays?: number | null;
  /** How often expired messages are deleted, in ms (the first pass runs within a minute of start). Default one hour. */
  expireIntervalMs?: number;
  /** The default policy of accounts that set no preferences. Default `'always'` (archiving on). */
  defaultPolicy?: MamDefaultPolicy;
  /** Results per page when the query names no RSM `max`. Default 50. */
  defaultPageSize?: number;
  /** The largest page served: a larger RSM `max` is capped to it (Prosody: `max_archive_query_results`). Default 250. */
  maxPageSize?: number;
  /**
   * Whether `contact` (a bare JID) is in `user`'s roster, for the `roster` policy. Default: reads
   * the roster module's `roster` key-value store.
   */
  inRoster?: (user: string, contact: string) => Promise<boolean>;
  /**
   * Deliver a message only once its archive entries are committed. Default false: the entries
   * are queued in order and go into the storage's transaction of the same event-loop turn (the
   * SQLite store commits it at the end of the turn) while the message is delivered; a failed write
   * is logged. Waiting costs a commit's latency per message on each session's stanzas (measured
   * with bench/xmpp.mjs: 0.16× the throughput without MAM, against 0.46× without waiting).
   */
  waitForArchive?: boolean;
  /** The clock (ms since the epoch), for tests. Default `Date.now`. */
  now?: () => number;
}

/** The MAM module, with its expiry callable directly (tests, admin tools). */
export interface MamModule extends XmppModule {
  /** Delete every item older than the retention period now; returns how many. 0 when keeping forever. */
  expire(): Promise<number>;
}

/** A user's archiving preferences, as stored (`mam-prefs` key-value store, key `prefs`). */
interface MamPrefs {
  default: MamDefaultPolicy;
  always: string[];
  never: string[];
}

/**
 * What the sender's hook hands on to the recipient's, on the element it marked (a property of the
 * element, not a WeakMap entry per message: measured in the profile of bench/xmpp.mjs): the text both
 * archives store (the sender's and the recipient's copies are the same stanza once stanza ids are left
 * out), serialized once; the sender's `<stanza-id/>` it added (the only local one left: the client's
 * were stripped), which the recipient's hook takes off again; and, when the sender's hook prepared
 * them, the recipient's archive id and the text of the message's children.
 */
interface Sent {
  /** The MAM instance that marked it. */
  module: object;
  text: string;
  stanzaId: XmlElement;
  when?: number;
  /** The account the prepared id is for. */
  recipient?: string;
  recipientId?: string;
  /** The serialized children (without the sender's id). */
  inner?: string;
}

/** A message the sender's hook archived and marked with its `<stanza-id/>` (the last child). */
class SentMessage extends XmlElement {
  readonly sent: Sent;

  constructor(name: string, attrs: Record<string, string>, children: XmlNode[], xmlns: string, sent: Sent) {
    super(name, attrs, children, xmlns);
    this.sent = sent;
  }
}

/** The copy a recipient gets of a message her archive has (with her `<stanza-id/>`): not archived twice. */
class ArchivedMessage extends XmlElement {
  readonly module: object;

  constructor(name: string, attrs: Record<string, string>, children: XmlNode[], xmlns: string, module: object) {
    super(name, attrs, children, xmlns);
    this.module = module;
  }
}

/**
 * An {@link ArchivedMessage} whose children's text is known (the sender's hook serialized them for the
 * archive): written from that text, unless its children changed in number since.
 */
class DeliveredMessage extends ArchivedMessage {
  readonly #inner: string;
  readonly #count: number;

  constructor(name: string, attrs: Record<string, string>, children: XmlNode[], xmlns: string, module: object, inner: string) {
    super(name, attrs, children, xmlns, module);
    this.#inner = inner;
    this.#count = children.length;
  }

  override toString(): string {
    if (this.children.length !== this.#count) return super.toString();
    let head = `<${this.name}`;
    const attrs = this.attrs;
    for (const name in attrs) head += ` ${name}='${escapeAttribute(attrs[name] as string)}'`;
    return `${head}>${this.#inner}</${this.name}>`;
  }
}

/** After an archive write failed and was logged, further failures are counted for this long (ms), not logged each. */
const FAILURE_LOG_MS = 10_000;
/** Accounts whose preferences and existence are cached. */
const CACHE_SIZE = 10_000;
const POLICIES: ReadonlySet<string> = new Set(['always', 'never', 'roster']);
const DAY_MS = 86_400_000;
/** The first expiry pass after start, at the latest. */
const FIRST_EXPIRY_MS = 60_000;
/** JIDs in one always/never list at most. */
const MAX_PREF_JIDS = 1000;
/** The longest `queryid` echoed back. */
const MAX_QUERY_ID = 256;
/** Namespaces left out of the archived copy (Prosody's `dont_archive_namespaces`): typing states. */
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
/** The query form's fields (XEP-0313 §4.1; before-id, after-id and ids with #extended). */
const QUERY_FIELDS = ['with', 'start', 'end', 'before-id', 'after-id', 'ids'] as const;
/** XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD. */
const DATETIME = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

export function mam(options: MamOptions = {}): MamModule {
  const retentionDays = options.retentionDays === undefined ? 365 : options.retentionDays;
  if (retentionDays !== null && !(typeof retentionDays === 'number' && Number.isFinite(retentionDays) && retentionDays > 0)) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `mam: retentionDays must be a positive number of days or null (keep forever), got ${JSON.stringify(retentionDays)}`,
    );
  }
  const expireIntervalMs = positiveInteger('expireIntervalMs', options.expireIntervalMs, 3_600_000);
  const maxPageSize = positiveInteger('maxPageSize', options.maxPageSize, 250);
  const defaultPageSize = positiveInteger('defaultPageSize', options.defaultPageSize, Math.min(50, maxPageSize));
  if (defaultPageSize > maxPageSize) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `mam: defaultPageSize (${defaultPageSize}) is larger than maxPageSize (${maxPageSize})`,
    );
  }
  const defaultPolicy = options.defaultPolicy ?? 'always';
  if (!POLICIES.has(defaultPolicy)) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `mam: defaultPolicy must be 'always', 'never' or 'roster', got ${JSON.stringify(defaultPolicy)}`,
    );
  }
  const now = options.now ?? Date.now;
  const waitForArchive = options.waitForArchive === true;
  let archive: ArchiveStore | undefined;

  const expire = async (): Promise<number> => {
    if (retentionDays === null || archive === undefined) return 0;
    return archive.expire(now() - retentionDays * DAY_MS);
  };

  return {
    name: 'mam',
    expire,
    setup(api: ModuleApi): void {
      const store = api.archive('mam');
      archive = store;
      const prefsStore = api.keyValue('mam-prefs');
      const inRoster = options.inRoster ?? rosterLookup(api.keyValue('roster'));
      // This instance's mark on the messages it handled (another server in the process has its own).
      const self: object = {};
      const ownBare = (user: string): string => `${user}@${api.domain}`;

      api.discoFeature(NS_MAM, 'account');
      api.discoFeature(NS_MAM_EXTENDED, 'account');
      api.discoFeature(NS_SID, 'account');

      // Every archived message reads the owner's preferences and checks the account exists: both
      // are cached (this module is the only writer of the preferences; removal evicts).
      const prefsCache = new BoundedCache<string, MamPrefs>(CACHE_SIZE);
      const existing = new BoundedCache<string, true>(CACHE_SIZE);
      const prefsOf = async (user: string): Promise<MamPrefs> => {
        const cached = prefsCache.get(user);
        if (cached !== undefined) return cached;
        const prefs = toPrefs(await prefsStore.get(user, 'prefs'), defaultPolicy);
        prefsCache.set(user, prefs);
        return prefs;
      };
      const accountExists = async (user: string): Promise<boolean> => {
        if (existing.get(user) === true) return true;
        const exists = await api.userExists(user);
        if (exists) existing.set(user, true);
        return exists;
      };

      /**
       * XEP-0313 §6: the lists first (never wins over always), then the default. Answered at once
       * when the preferences are cached and need no roster (every message of a busy server); a
       * promise otherwise.
       */
      const shallStore = (user: string, other: Jid): boolean | Promise<boolean> => {
        const prefs = prefsCache.get(user);
        if (prefs === undefined) return prefsOf(user).then(() => shallStore(user, other));
        const bare = other.bare;
        if (prefs.never.length > 0 || prefs.always.length > 0) {
          const full = other.toString();
          if (prefs.never.includes(bare) || prefs.never.includes(full)) return false;
          if (prefs.always.includes(bare) || prefs.always.includes(full)) return true;
        }
        if (prefs.default === 'always') return true;
        if (prefs.default === 'never') return false;
        return bare === ownBare(user) || inRoster(user, bare);
      };
      /** Whether to archive for `user` (an existing account whose preferences keep `other`); at once when cached. */
      const decide = (user: string, other: Jid, checkAccount: boolean): boolean | Promise<boolean> => {
        if (checkAccount && existing.get(user) !== true) {
          return accountExists(user).then((exists) => exists && shallStore(user, other));
        }
        return shallStore(user, other);
      };

      // What the sender's hook hands on to routing rides on the element it marked (a SentMessage, see Sent).
      const sentOf = (stanza: XmlElement): Sent | undefined =>
        stanza instanceof SentMessage && stanza.sent.module === self ? stanza.sent : undefined;
      /** Whether this instance made this copy for a recipient whose archive has it. */
      const isArchived = (stanza: XmlElement): boolean => stanza instanceof ArchivedMessage && stanza.module === self;
      // A storage that fails fails for every message (a full disk, the database gone): the first failure
      // is logged with its error, the next ones of the following FAILURE_LOG_MS are counted, and the count
      // goes with the next line (or with a line of its own once they stop), so the log says how many
      // messages went unarchived without a line per message.
      let lastFailureLogged = Number.NEGATIVE_INFINITY;
      let unlogged = 0;
      let unloggedTimer: NodeJS.Timeout | undefined;
      const archiveFailed = (error: unknown, user: string): void => {
        const at = now();
        if (at - lastFailureLogged < FAILURE_LOG_MS) {
          unlogged++;
          if (unloggedTimer === undefined) {
            unloggedTimer = setTimeout(() => {
              unloggedTimer = undefined;
              if (unlogged === 0) return;
              api.logger.error({ failed: unlogged }, 'XMPP MAM: more archive writes failed since the last line');
              unlogged = 0;
            }, FAILURE_LOG_MS);
            unloggedTimer.unref();
          }
          return;
        }
        lastFailureLogged = at;
        const fields = unlogged > 0 ? { err: error, user, failedBefore: unlogged } : { err: error, user };
        unlogged = 0;
        api.logger.error(fields, 'XMPP MAM: archiving a message failed');
      };
      /**
       * Archive a copy now: its id and text, and with waitForArchive the write (which never rejects:
       * a failure is logged, the chat goes on unarchived). Without, nothing waits for the write: the
       * store's record() (no promise to settle per message), a failure logged all the same.
       */
      const append = (
        user: string,
        stanza: XmlElement,
        from: Jid,
        to: Jid,
        other: Jid,
        text?: string,
      ): { id: string; text: string; written: Promise<boolean> | undefined } => {
        const when = now();
        const id = archiveId(when);
        const xmlText = text ?? storedCopy(stanza, from, to).toString();
        const item = { id, when, with: other.bare, xml: xmlText };
        if (!waitForArchive) {
          if (store.record !== undefined) store.record(user, item, archiveFailed);
          else store.append(user, item).catch((error: unknown) => archiveFailed(error, user));
          return { id, text: xmlText, written: undefined };
        }
        const written = store.append(user, item).then(
          () => true,
          (error: unknown) => {
            archiveFailed(error, user);
            return false;
          },
        );
        return { id, text: xmlText, written };
      };

      /**
       * The sender's copy of a message to a local account, archived at once (the common case: no
       * waitForArchive). One serialization of the message's children serves the stored text of both
       * archives and the copy the recipient gets: the recipient's archive id is drawn now, and the
       * delivered copy's text is the same children text and the recipient's `<stanza-id/>`. The
       * recipient's hook then only records and makes the delivered copy.
       */
      const prepare = (event: StanzaEvent, user: string, to: Jid): void => {
        const stanza = event.stanza;
        const { name, attrs, children, xmlns } = stanza;
        const when = now();
        const senderId = archiveId(when);
        const senderSid = new XmlElement('stanza-id', { xmlns: NS_SID, by: ownBare(user), id: senderId }, [], NS_SID);
        let text: string;
        let inner: string | undefined;
        let recipientId: string | undefined;
        if (children.every(storedChild)) {
          recipientId = archiveId(when);
          const whole = new XmlElement(name, {}, children, xmlns).toString();
          inner = children.length === 0 ? '' : whole.slice(name.length + 2, whole.length - name.length - 3);
          text = `${storedHead(stanza, event.from.toString(), attrs.to ?? to.toString())}${inner}</${name}>`;
        } else {
          text = storedCopy(stanza, event.from, to).toString();
        }
        store.record?.(user, { id: senderId, when, with: to.bare, xml: text }, archiveFailed);
        // The sender's id rides along to the carbons; the recipient's hook strips it (a contact has
        // no access to this archive).
        event.stanza = new SentMessage(name, { ...attrs }, [...children, senderSid], xmlns, {
          module: self,
          text,
          stanzaId: senderSid,
          when,
          recipient: to.local,
          recipientId,
          inner,
        });
      };

      // Outgoing: the sender's archive, before routing (Prosody's pre-message hooks). After
      // blocking and other checks that refuse the message (they run at higher priorities), and
      // before sent carbons (-100), which then carry the sender's stanza id (XEP-0313 §3.5).
      // Synchronous when nothing needs the store (cached preferences, no waitForArchive): a hook
      // that returns a promise costs microtasks on every message.
      const outgoing = (event: StanzaEvent, user: string, to: Jid, local: boolean): undefined | Promise<undefined> => {
        if (local && !waitForArchive && store.record !== undefined) {
          prepare(event, user, to);
          return undefined;
        }
        const copy = append(user, event.stanza, event.from, to, to);
        const mark = (): undefined => {
          // The sender's id rides along to the carbons; the recipient's hook strips it (a contact
          // has no access to this archive). Never on a stanza that leaves the server.
          if (local) {
            const stanzaId = xml('stanza-id', { xmlns: NS_SID, by: ownBare(user), id: copy.id });
            const { name, attrs, children, xmlns } = event.stanza;
            event.stanza = new SentMessage(name, { ...attrs }, [...children, stanzaId], xmlns, { module: self, text: copy.text, stanzaId });
          }
          return undefined;
        };
        if (copy.written === undefined) return mark();
        return copy.written.then((ok) => (ok ? mark() : undefined));
      };
      api.hook(
        'message/in',
        (event) => {
          const stripped = stripLocalStanzaIds(event.stanza, api.domain);
          if (stripped !== event.stanza) event.stanza = stripped;
          if (event.redelivery || event.session?.user === undefined) return;
          const user = event.from.local;
          const to = event.to;
          // A message to oneself is archived once, as it arrives (message/bare or message/full).
          if (to.bare === event.from.bare || to.local === '') return;
          if (!shouldArchive(event.stanza)) return;
          const local = to.domain === api.domain;
          // The recipient must exist (a message to nobody is bounced, not archived); the sender does.
          const recipient = local && existing.get(to.local) !== true ? accountExists(to.local) : true;
          if (recipient === true) {
            const keep = shallStore(user, to);
            if (keep === true) return outgoing(event, user, to, local);
            if (keep === false) return;
            return keep.then((yes) => (yes ? outgoing(event, user, to, local) : undefined));
          }
          return recipient.then(async (exists) => (exists && (await shallStore(user, to)) ? outgoing(event, user, to, local) : undefined));
        },
        -50,
      );

      // Incoming: the recipient's archive, and the stanza id on the copy delivered.
      const archiveIncoming = (
        event: StanzaEvent,
        user: string,
        stanza: XmlElement,
        text: string | undefined,
        children: XmlNode[] = stanza.children,
      ): undefined | Promise<undefined> => {
        const copy = append(user, stanza, event.from, event.to, event.from, text);
        const mark = (): undefined => {
          // The stanza's children (for a marked one: without the sender's id) and the recipient's id: one copy.
          const stanzaId = xml('stanza-id', { xmlns: NS_SID, by: ownBare(user), id: copy.id });
          event.stanza = new ArchivedMessage(stanza.name, { ...stanza.attrs }, [...children, stanzaId], stanza.xmlns, self);
          return undefined;
        };
        if (copy.written === undefined) return mark();
        return copy.written.then((ok) => (ok ? mark() : undefined));
      };
      const incoming = (event: StanzaEvent): undefined | Promise<undefined> => {
        if (event.redelivery || isArchived(event.stanza)) return;
        const user = event.to.local;
        // Only the recipient's own stanza id reaches her (XEP-0313 §3.5): a client's claim to be
        // us (XEP-0359 §4) and the sender's archive id are stripped. A message the sender's hook
        // marked (its last child still the id it added) has no other: that child goes, the
        // stanza was archivable, and its stored text is known.
        const from = sentOf(event.stanza);
        const children = event.stanza.children;
        let text: string | undefined;
        let stanza: XmlElement;
        if (from !== undefined && children[children.length - 1] === from.stanzaId) {
          text = from.text;
          // Archived at once (the common case): the delivered copy is made once, with the recipient's id.
          const keep = waitForArchive ? undefined : decide(user, event.from, true);
          if (keep === true && from.recipientId !== undefined && from.recipient === user && store.record !== undefined) {
            // Prepared by the sender's hook: the id, the stored text and the children's text.
            const id = from.recipientId;
            store.record(user, { id, when: from.when as number, with: event.from.bare, xml: text }, archiveFailed);
            const { name, attrs, xmlns } = event.stanza;
            const stanzaId = new XmlElement('stanza-id', { xmlns: NS_SID, by: ownBare(user), id }, [], NS_SID);
            const sidText = `<stanza-id xmlns='${NS_SID}' by='${escapeAttribute(ownBare(user))}' id='${id}'/>`;
            const kept = children.slice(0, -1);
            kept.push(stanzaId);
            event.stanza = new DeliveredMessage(name, { ...attrs }, kept, xmlns, self, `${from.inner as string}${sidText}`);
            return;
          }
          const kept = children.slice(0, -1);
          if (keep === true) return archiveIncoming(event, user, event.stanza, text, kept);
          stanza = new XmlElement(event.stanza.name, { ...event.stanza.attrs }, kept, event.stanza.xmlns);
          event.stanza = stanza;
          if (keep === false) return;
          if (keep !== undefined) return keep.then((yes) => (yes ? archiveIncoming(event, user, stanza, text) : undefined));
        } else {
          stanza = stripLocalStanzaIds(event.stanza, api.domain);
          if (stanza !== event.stanza) event.stanza = stanza;
          if (!shouldArchive(stanza)) return;
        }
        const keep = decide(user, event.from, true);
        if (keep === true) return archiveIncoming(event, user, stanza, text);
        if (keep === false) return;
        return keep.then((yes) => (yes ? archiveIncoming(event, user, stanza, text) : undefined));
      };
      api.hook('message/bare', incoming, -100);
      api.hook('message/full', incoming, -100);

      // ---- queries (XEP-0313 §4) ----

      // Form discovery (§4.1.5): the fields a query may use.
      api.iq({ xmlns: NS_MAM, element: 'query', to: 'self', type: 'get' }, () => mamQueryForm());

      api.iq({ xmlns: NS_MAM, element: 'query', to: 'self', type: 'set' }, async (_iq, context) => {
        const user = context.to.local;
        const query = context.payload;
        const queryId = query.attr('queryid');
        if (queryId !== undefined && queryId.length > MAX_QUERY_ID) throw new StanzaErrorException('bad-request', 'queryid is too long');
        const filter = parseQuery(query, { defaultMax: defaultPageSize, maxCap: maxPageSize });

        // Every id named must be in the archive (§4.1.3, §4.3.2): item-not-found otherwise. The
        // stores answer an unknown `after`/`before` cursor so themselves; `ids` are checked here.
        if (filter.ids !== undefined) {
          const found = await store.query(user, { ids: filter.ids, max: filter.ids.length });
          if (found.items.length < filter.ids.length)
            throw new StanzaErrorException('item-not-found', 'no message with that id in the archive');
        }

        const result = await store.query(user, filter);
        const items = filter.max === 0 ? [] : result.items;
        const send = async (stanza: XmlElement): Promise<void> => {
          if (context.session !== undefined) context.session.send(stanza);
          else await api.route(stanza);
        };
        const ordered = query.getChild('flip-page', NS_MAM) !== undefined ? [...items].reverse() : items;
        for (const item of ordered) {
          const message = resultMessage(item, context, queryId, api);
          if (message !== undefined) await send(message);
        }
        const first = items[0];
        const last = items[items.length - 1];
        return xml(
          'fin',
          { xmlns: NS_MAM, queryid: queryId, complete: result.complete || (filter.max === 0 && result.count === 0) ? 'true' : undefined },
          buildRsmAnswer({ first: first?.id, last: last?.id, count: result.count }),
        );
      });

      // Archive metadata (§5, #extended): the first and last items.
      api.iq({ xmlns: NS_MAM, element: 'metadata', to: 'self', type: 'get' }, async (_iq, context) => {
        const user = context.to.local;
        const oldest = (await store.query(user, { max: 1 })).items[0];
        const newest = (await store.query(user, { before: '', max: 1 })).items[0];
        const metadata = xml('metadata', { xmlns: NS_MAM });
        if (oldest !== undefined && newest !== undefined) {
          metadata.append(
            xml('start', { id: oldest.id, timestamp: stamp(oldest.when) }),
            xml('end', { id: newest.id, timestamp: stamp(newest.when) }),
          );
        }
        return metadata;
      });

      // Preferences (§6): get answers the stored ones; set replaces them and answers the result.
      api.iq({ xmlns: NS_MAM, element: 'prefs', to: 'self' }, async (iq, context) => {
        const user = context.to.local;
        if (iq.attr('type') === 'set') {
          const prefs = parsePrefs(context.payload);
          await prefsStore.set(user, 'prefs', { default: prefs.default, always: prefs.always, never: prefs.never });
          prefsCache.set(user, prefs);
          return prefsElement(prefs);
        }
        return prefsElement(await prefsOf(user));
      });

      // ---- retention and account removal ----

      api.hook('account/deleted', async ({ user }) => {
        prefsCache.delete(user);
        existing.delete(user);
        await store.delete(user);
        await prefsStore.clear(user);
      });

      if (retentionDays !== null) {
        // A first pass soon after start (a server restarted more often than the interval still
        // expires), then one per interval; never two at once.
        let running = false;
        let timer: NodeJS.Timeout | undefined;
        const pass = (): void => {
          timer = setTimeout(pass, expireIntervalMs);
          timer.unref();
          if (running) return;
          running = true;
          expire()
            .then((deleted) => {
              if (deleted > 0) api.logger.info({ deleted, retentionDays }, 'XMPP MAM: expired archived messages');
            })
            .catch((error: unknown) => api.logger.error({ err: error }, 'XMPP MAM: expiring archived messages failed'))
            .finally(() => {
              running = false;
            });
        };
        timer = setTimeout(pass, Math.min(expireIntervalMs, FIRST_EXPIRY_MS));
        timer.unref();
        api.onStop(() => clearTimeout(timer));
      }
    },
  };
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `mam: ${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The query form (XEP-0313 §4.1.5): the fields a query may use — for an account's archive and a room's. */
export function mamQueryForm(): XmlElement {
  return xml(
    'query',
    { xmlns: NS_MAM },
    buildDataForm({
      type: 'form',
      formType: NS_MAM,
      fields: [
        { var: 'with', type: 'jid-single' },
        { var: 'start', type: 'text-single' },
        { var: 'end', type: 'text-single' },
        { var: 'before-id', type: 'text-single' },
        { var: 'after-id', type: 'text-single' },
        // XEP-0122 <validate/> with <open/>: the server never lists every id (§4.1.5).
        { var: 'ids', type: 'list-multi', children: [openValidation()] },
      ],
    }),
  );
}

/**
 * What a user archive keeps (XEP-0313 §7.1.1, as Prosody's mod_mam): chat and normal messages
 * with content — a body, an encrypted payload, an invitation, or a `<store/>` hint — never errors,
 * headlines or groupchat, nor messages hinted `<no-store/>`/`<no-permanent-store/>` (XEP-0334).
 * A message with only a chat state has no content and is not kept.
 */
export function shouldArchive(stanza: XmlElement): boolean {
  const type = stanza.attrs.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  // One pass over the children (every message goes through here).
  let content = false;
  for (const child of stanza.children) {
    if (typeof child === 'string') continue;
    const xmlns = child.xmlns;
    if (xmlns === NS_HINTS) {
      const local = child.local;
      if (local === 'no-permanent-store' || local === 'no-store') return false;
      if (local === 'store') content = true;
    } else if (
      !content &&
      ((child.local === 'body' && (xmlns === NS_CLIENT || xmlns === '')) ||
        // OMEMO and other end-to-end encryption (XEP-0380), invitations (XEP-0249, XEP-0045).
        xmlns === 'urn:xmpp:eme:0' ||
        xmlns === 'eu.siacs.conversations.axolotl' ||
        xmlns === 'jabber:x:conference')
    ) {
      content = true;
    }
  }
  return content;
}

/** The stanza without the `<stanza-id/>`s whose `by` matches; the same element when there are none. */
function stripStanzaIds(stanza: XmlElement, claims: (by: string) => boolean): XmlElement {
  const drop = (child: XmlElement | string): boolean =>
    typeof child !== 'string' && child.local === 'stanza-id' && child.xmlns === NS_SID && claims(normalizeJid(child.attr('by')));
  if (!stanza.children.some(drop)) return stanza;
  return new XmlElement(
    stanza.name,
    { ...stanza.attrs },
    stanza.children.filter((child) => !drop(child)),
    stanza.xmlns,
  );
}

/** A client may not send stanza ids that claim to come from this server or its accounts. */
function stripLocalStanzaIds(stanza: XmlElement, domain: string): XmlElement {
  // Most messages have no stanza id at all: answered without a closure per message.
  let any = false;
  for (const child of stanza.children) {
    if (typeof child !== 'string' && child.xmlns === NS_SID) {
      any = true;
      break;
    }
  }
  if (!any) return stanza;
  return stripStanzaIds(stanza, (by) => {
    const jid = Jid.parse(by);
    return jid === undefined || jid.domain === domain;
  });
}

function normalizeJid(text: string | undefined): string {
  if (text === undefined) return '';
  return Jid.parse(text)?.toString() ?? text;
}

/** Whether a child of a message is kept in its stored copy: not chat states, not stanza ids. */
function storedChild(child: XmlNode): boolean {
  return typeof child === 'string' || (child.xmlns !== NS_CHATSTATES && !(child.local === 'stanza-id' && child.xmlns === NS_SID));
}

/** The start tag of {@link storedCopy}'s text: the stanza's attributes with `xmlns`, `from` and `to` set. */
function storedHead(stanza: XmlElement, from: string, to: string): string {
  let head = `<${stanza.name}`;
  const attrs = stanza.attrs;
  for (const name in attrs) {
    if (name === 'xmlns' || name === 'from' || name === 'to') continue;
    head += ` ${name}='${escapeAttribute(attrs[name] as string)}'`;
  }
  return `${head} xmlns='${NS_CLIENT}' from='${escapeAttribute(from)}' to='${escapeAttribute(to)}'>`;
}

/** What is stored: the message as routed (from stamped, to filled in), in jabber:client, chat states left out. */
function storedCopy(stanza: XmlElement, from: Jid, to: Jid): XmlElement {
  // Most messages have nothing to leave out: their children array is shared, not copied.
  const children = stanza.children.every(storedChild) ? stanza.children : stanza.children.filter(storedChild);
  const attrs = { ...stanza.attrs, xmlns: NS_CLIENT, from: from.toString(), to: stanza.attr('to') ?? to.toString() };
  return new XmlElement(stanza.name, attrs, children, NS_CLIENT);
}

function stamp(when: number): string {
  // XEP-0082 DateTime in UTC, whole seconds (as Prosody's) when there are no milliseconds.
  return new Date(when).toISOString().replace('.000Z', 'Z');
}

/** `<message><result queryid id><forwarded><delay/><message/></forwarded></result></message>` (§4.2). */
function resultMessage(item: ArchiveItem, context: IqContext, queryId: string | undefined, api: ModuleApi): XmlElement | undefined {
  const original = parseXml(item.xml);
  if (original === undefined) {
    api.logger.warn({ id: item.id }, 'XMPP MAM: an archived message could not be read: skipped');
    return undefined;
  }
  return xml(
    'message',
    { to: context.from.toString(), from: context.stanza.attr('to'), id: randomId(9) },
    xml(
      'result',
      { xmlns: NS_MAM, queryid: queryId, id: item.id },
      xml('forwarded', { xmlns: NS_FORWARD }, xml('delay', { xmlns: NS_DELAY, stamp: stamp(item.when) }), original),
    ),
  );
}

/** The query's form and RSM set, as an archive query. Malformed: bad-request; an unknown field: feature-not-implemented (§4.1.5). */
function parseQuery(query: XmlElement, limits: { defaultMax: number; maxCap: number }): ArchiveQuery & { max: number } {
  const rsm = parseRsm(query.getChild('set', 'http://jabber.org/protocol/rsm'), limits);
  if (rsm.index !== undefined)
    throw new StanzaErrorException(
      'feature-not-implemented',
      'RSM <index/> is not supported on the archive; page with <after/> or <before/>',
    );
  const filter: ArchiveQuery & { max: number } = { max: rsm.max };
  const x = query.getChild('x', 'jabber:x:data');
  if (x !== undefined) {
    const form = parseDataForm(x);
    if (form.formType !== NS_MAM) throw new DataFormError(`FORM_TYPE must be '${NS_MAM}'`);
    for (const name of form.fields.keys()) {
      if (!(QUERY_FIELDS as readonly string[]).includes(name))
        throw new StanzaErrorException('feature-not-implemented', `unknown query field '${name}'`);
    }
    const withJid = form.jid('with');
    // A full JID narrows nothing here: the archive is kept by bare JID (as Prosody's).
    if (withJid !== undefined) filter.with = withJid.bare;
    const start = timestamp(form.value('start'), 'start');
    const end = timestamp(form.value('end'), 'end');
    if (start !== undefined) filter.start = start;
    if (end !== undefined) filter.end = end;
    const afterId = form.value('after-id');
    const beforeId = form.value('before-id');
    if (afterId !== undefined) filter.after = afterId;
    if (beforeId !== undefined) {
      if (beforeId === '') throw new DataFormError("'before-id' must name a message");
      filter.before = beforeId;
    }
    const ids = form.values('ids');
    if (form.has('ids')) {
      if (ids.length === 0 || ids.includes('')) throw new DataFormError("'ids' must name messages");
      filter.ids = [...new Set(ids)];
    }
  }
  // RSM's <after/> and <before/> page within the form's range (Prosody: RSM wins over the form's ids).
  if (rsm.after !== undefined) filter.after = rsm.after;
  if (rsm.before !== undefined) filter.before = rsm.before;
  return filter;
}

function timestamp(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = DATETIME.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new DataFormError(`'${name}' is not an XEP-0082 timestamp: '${value}'`);
  return ms;
}

/** XEP-0122 `<validate/>` for the open `ids` list. */
function openValidation(): XmlElement {
  return xml('validate', { xmlns: 'http://jabber.org/protocol/xdata-validate', datatype: 'xs:string' }, xml('open'));
}

function toPrefs(value: JsonValue | undefined, defaultPolicy: MamDefaultPolicy): MamPrefs {
  const prefs: MamPrefs = { default: defaultPolicy, always: [], never: [] };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return prefs;
  const policy = value.default;
  if (typeof policy === 'string' && POLICIES.has(policy)) prefs.default = policy as MamDefaultPolicy;
  for (const list of ['always', 'never'] as const) {
    const jids = value[list];
    if (Array.isArray(jids)) prefs[list] = jids.filter((jid): jid is string => typeof jid === 'string');
  }
  return prefs;
}

/** `<prefs default=…><always><jid/>…</always><never>…</never></prefs>` (§6.1). */
function parsePrefs(element: XmlElement): MamPrefs {
  const policy = element.attr('default');
  if (policy === undefined || !POLICIES.has(policy))
    throw new StanzaErrorException('bad-request', "prefs 'default' must be 'always', 'never' or 'roster'");
  const list = (name: 'always' | 'never'): string[] => {
    const holder = element.getChild(name, NS_MAM);
    if (holder === undefined) return [];
    const jids = holder.getChildren('jid', NS_MAM);
    if (jids.length > MAX_PREF_JIDS) throw new StanzaErrorException('policy-violation', `at most ${MAX_PREF_JIDS} JIDs in <${name}/>`);
    const out: string[] = [];
    for (const jid of jids) {
      const parsed = Jid.parse(jid.text().trim());
      if (parsed === undefined) throw new StanzaErrorException('jid-malformed', `not a JID in <${name}/>: '${jid.text()}'`);
      const text = parsed.toString();
      if (!out.includes(text)) out.push(text);
    }
    return out;
  };
  return { default: policy as MamDefaultPolicy, always: list('always'), never: list('never') };
}

function prefsElement(prefs: MamPrefs): XmlElement {
  const list = (name: string, jids: string[]): XmlElement => xml(name, {}, ...jids.map((jid) => xml('jid', {}, jid)));
  return xml('prefs', { xmlns: NS_MAM, default: prefs.default }, list('always', prefs.always), list('never', prefs.never));
}

/**
 * The default roster lookup: the roster module's `roster` key-value store, read defensively (a
 * value per contact, or one document per account with the contacts as keys or an `items` list).
 */
function rosterLookup(roster: KeyValueStore): (user: string, contact: string) => Promise<boolean> {
  return async (user, contact) => {
    try {
      if ((await roster.get(user, contact)) !== undefined) return true;
      const document = await roster.get(user, 'roster');
      if (document === null || typeof document !== 'object') return false;
      if (Array.isArray(document)) return document.some((item) => isItemFor(item, contact));
      if (contact in document) return true;
      const items = document.items;
      if (Array.isArray(items)) return items.some((item) => isItemFor(item, contact));
      return items !== null && typeof items === 'object' && contact in items;
    } catch {
      return false;
    }
  };
}

function isItemFor(item: JsonValue, contact: string): boolean {
  return item !== null && typeof item === 'object' && !Array.isArray(item) && item.jid === contact;
}

/** A Map that forgets its oldest entry past `size` (insertion order; a read does not refresh). */
class BoundedCache<K, V> {
  readonly #map = new Map<K, V>();
  readonly #size: number;

  constructor(size: number) {
    this.#size = size;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#size) this.#map.delete(this.#map.keys().next().value as K);
  }

  delete(key: K): void {
    this.#map.delete(key);
  }
}

// Archive ids must be unpredictable (XEP-0313 §3): random bytes, drawn from the system's CSPRNG
// in blocks and encoded a block at a time (one call per message showed in the profile of
// bench/xmpp.mjs): every 3 bytes are 4 characters of their own, so an id is a slice of the block's text.
const RANDOM_BLOCK = 3072;
let randomPool = '';
let randomOffset = 0;

/** The time prefix of the last archive id, and its time. */
let lastWhen = Number.NaN;
let lastPrefix = '';
/**
 * An archive id: its time (ms, base 36) and 9 random bytes (base64url). Ids that grow with time: the
 * archive's unique index on them is appended to at its end instead of at a random page (measured:
 * ~13 % less CPU per archived row).
 */
function archiveId(when: number): string {
  if (when !== lastWhen) {
    lastWhen = when;
    lastPrefix = when.toString(36);
  }
  return lastPrefix + randomId(9);
}

/** `bytes` random bytes (a multiple of 3), base64url. */
function randomId(bytes: number): string {
  const chars = (bytes / 3) * 4;
  if (randomOffset + chars > randomPool.length) {
    randomPool = randomBytes(RANDOM_BLOCK).toString('base64url');
    randomOffset = 0;
  }
  const id = randomPool.slice(randomOffset, randomOffset + chars);
  randomOffset += chars;
  return id;
}
