import type { XmlElement } from './element.js';

/** A contact in a user's roster (RFC 6121 §2.1.2). */
export interface RosterItem {
  /** The contact's bare JID. */
  jid: string;
  name?: string;
  subscription: 'none' | 'to' | 'from' | 'both';
  /** An outbound subscription request is pending. */
  ask?: 'subscribe';
  groups: string[];
}

/** Where rosters live. Methods may return promises. The default keeps them in memory. */
export interface RosterStore {
  /** The user's roster and its version (RFC 6121 §2.6 roster versioning). */
  get(user: string): { items: RosterItem[]; version: string } | Promise<{ items: RosterItem[]; version: string }>;
  /** Add or update an item; returns the new roster version. */
  set(user: string, item: RosterItem): string | Promise<string>;
  /** Remove an item; returns the new roster version. */
  remove(user: string, jid: string): string | Promise<string>;
}

export class MemoryRosterStore implements RosterStore {
  readonly #rosters = new Map<string, { items: Map<string, RosterItem>; version: number }>();

  get(user: string): { items: RosterItem[]; version: string } {
    const roster = this.#rosters.get(user);
    return {
      items: roster ? [...roster.items.values()].map((item) => ({ ...item, groups: [...item.groups] })) : [],
      version: String(roster?.version ?? 0),
    };
  }

  set(user: string, item: RosterItem): string {
    const roster = this.#roster(user);
    roster.items.set(item.jid, { ...item, groups: [...item.groups] });
    return String(++roster.version);
  }

  remove(user: string, jid: string): string {
    const roster = this.#roster(user);
    roster.items.delete(jid);
    return String(++roster.version);
  }

  #roster(user: string): { items: Map<string, RosterItem>; version: number } {
    let roster = this.#rosters.get(user);
    if (roster === undefined) {
      roster = { items: new Map(), version: 0 };
      this.#rosters.set(user, roster);
    }
    return roster;
  }
}

/** Messages kept for users who are offline, delivered at their next login (XEP-0160). */
export interface OfflineStore {
  /** Keep a message; false when the user's store is full (the sender then gets an error). */
  push(user: string, message: XmlElement): boolean | Promise<boolean>;
  /** Take (and forget) every stored message of the user, oldest first. */
  take(user: string): XmlElement[] | Promise<XmlElement[]>;
}

export class MemoryOfflineStore implements OfflineStore {
  readonly #messages = new Map<string, XmlElement[]>();
  /** Messages kept per user. */
  readonly limit: number;

  constructor(options: { limit?: number } = {}) {
    this.limit = options.limit ?? 100;
  }

  push(user: string, message: XmlElement): boolean {
    let list = this.#messages.get(user);
    if (list === undefined) {
      list = [];
      this.#messages.set(user, list);
    }
    if (list.length >= this.limit) return false;
    list.push(message);
    return true;
  }

  take(user: string): XmlElement[] {
    const list = this.#messages.get(user) ?? [];
    this.#messages.delete(user);
    return list;
  }
}
