// A small PubSub core (XEP-0060): nodes per owner with their configuration, items, limits. It
// knows nothing of who asks: the protocol layer (PEP, pep.ts) checks access and sends the
// notifications this returns. Configuration is kept in a key-value store (owner, `node:` + name),
// persistent items in an archive store (owner, `with` = node name, `id` = item id), items of
// nodes that do not persist in memory (the last one only, for "last published item").
//
// On several processes (one store, a bus between them) what this keeps in memory — the
// configurations read through, "no such node" included, and the last items of nodes that do not
// persist — is this process's: whoever changes a node tells the others ({@link PubSubChange}, sent
// by the protocol layer on the bus), and they {@link PubSubService.apply} it: a configuration is
// forgotten (read again from the store), a last item not persisted is taken as it is.

import { randomBytes } from 'node:crypto';
import { type XmlElement, xml } from '../../element.js';
import { parseXml } from '../../parse.js';
import type { ArchiveStore, JsonValue, KeyValueStore } from '../../stores/types.js';
import { configFromJson, configToJson, defaultNodeConfig, type NodeConfig, preconditionNotMet, unmetPrecondition } from './config.js';
import { pubsubError } from './errors.js';

export interface PubSubLimits {
  /** Largest item (its serialized XML, in bytes). */
  maxItemBytes: number;
  /** Nodes per owner. */
  maxNodes: number;
  /** Items kept per node at most (`max_items` and `max` are capped here). */
  maxItemsPerNode: number;
  /** Items per retrieval at most. */
  maxItemsPerRequest: number;
}

/** One published item. */
export interface PubSubItem {
  id: string;
  /** The publisher's bare JID. */
  publisher: string | undefined;
  /** The payload element (none for a notification-only item). */
  payload: XmlElement | undefined;
  when: number;
}

export interface StoredNode {
  name: string;
  config: NodeConfig;
}

export interface PublishOutcome {
  node: StoredNode;
  item: PubSubItem;
  /** The publish created the node. */
  created: boolean;
}

/**
 * What changed in a service's memory, for the other processes sharing its store (a JSON value:
 * {@link PubSubService.onChange} gives it, {@link PubSubService.apply} takes it).
 * `node` absent: everything of the owner (account removal).
 */
export interface PubSubChange {
  owner: string;
  node?: string;
  /** The node's configuration changed (created, configured, deleted): read it again. */
  config?: boolean;
  /**
   * The last item of a node that does not persist items: the item as stored (`<item id publisher>`
   * with its payload, serialized) and when it was published, or null when it is gone (retracted,
   * purged, deleted, the node now persisting).
   */
  last?: { xml: string; when: number } | null;
}

const NODE_KEY = 'node:';
/** Node names are identifiers (namespaces, URNs): printable, bounded. */
const NODE_NAME = /^[^\s\p{Cc}]{1,512}$/u;

export class PubSubService {
  readonly limits: PubSubLimits;
  readonly #config: KeyValueStore;
  readonly #items: ArchiveStore;
  readonly #defaults: () => NodeConfig;
  /** Last item of nodes that do not persist items, by owner and node. */
  readonly #volatile = new Map<string, PubSubItem>();
  /** Configuration read through (nodes are read on every presence and publish). */
  readonly #cache = new Map<string, NodeConfig | null>();
  /** One operation at a time per owner (create-on-publish, trimming). */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Bumped by every {@link forget}: a read of the store that started before is not remembered. */
  #generation = 0;
  readonly #changeListeners: Array<(change: PubSubChange) => void> = [];

  constructor(config: KeyValueStore, items: ArchiveStore, limits: PubSubLimits, defaults: () => NodeConfig = defaultNodeConfig) {
    this.#config = config;
    this.#items = items;
    this.limits = limits;
    this.#defaults = defaults;
  }

  /** A node name is acceptable (else `bad-request` + `<nodeid-required/>`). */
  static checkName(name: string | undefined): string {
    if (name === undefined || name === '') throw pubsubError('bad-request', 'nodeid-required');
    if (!NODE_NAME.test(name)) throw pubsubError('not-acceptable', undefined, 'invalid node name');
    return name;
  }

  async node(owner: string, name: string): Promise<StoredNode | undefined> {
    const key = cacheKey(owner, name);
    let config = this.#cache.get(key);
    if (config === undefined) {
      const generation = this.#generation;
      const stored = await this.#config.get(owner, NODE_KEY + name);
      config = stored === undefined ? null : configFromJson(stored);
      // Forgotten meanwhile (another process changed a node): what was read may be older than the change.
      if (generation === this.#generation) this.#remember(key, config);
    }
    return config === null ? undefined : { name, config };
  }

  /** Every node of an owner. */
  async nodes(owner: string): Promise<StoredNode[]> {
    const keys = await this.#config.keys(owner, NODE_KEY);
    const nodes: StoredNode[] = [];
    for (const key of keys) {
      const node = await this.node(owner, key.slice(NODE_KEY.length));
      if (node !== undefined) nodes.push(node);
    }
    return nodes;
  }

  /** Create a node (`conflict` when it exists, `not-allowed` past the owner's node limit). */
  create(owner: string, name: string, options: Partial<NodeConfig> = {}): Promise<StoredNode> {
    return this.#serial(owner, async () => {
      if ((await this.node(owner, name)) !== undefined) throw pubsubError('conflict', undefined, 'the node exists');
      return this.#create(owner, name, options);
    });
  }

  async #create(owner: string, name: string, options: Partial<NodeConfig>): Promise<StoredNode> {
    const count = (await this.#config.keys(owner, NODE_KEY)).length;
    if (count >= this.limits.maxNodes) throw pubsubError('not-allowed', 'max-nodes-exceeded', `at most ${this.limits.maxNodes} nodes`);
    const config = { ...this.#defaults(), ...options };
    config.maxItems = Math.min(config.maxItems, this.limits.maxItemsPerNode);
    await this.#save(owner, name, config);
    this.#changed({ owner, node: name, config: true });
    return { name, config };
  }

  /** Change a node's configuration; items beyond a lowered `max_items` go. */
  configure(owner: string, name: string, changes: Partial<NodeConfig>): Promise<StoredNode> {
    return this.#serial(owner, async () => {
      const node = await this.#existing(owner, name);
      const config = { ...node.config, ...changes };
      await this.#save(owner, name, config);
      if (config.persistItems) await this.#items.trim(owner, name, config.maxItems);
      else await this.#items.delete(owner, { with: name });
      // A node persisting now has no last item in memory (the archive has its items from now on).
      const dropped = config.persistItems && this.#volatile.delete(cacheKey(owner, name));
      this.#changed({ owner, node: name, config: true, ...(dropped ? { last: null } : {}) });
      return { name, config };
    });
  }

  /** Delete a node and its items. */
  delete(owner: string, name: string): Promise<StoredNode> {
    return this.#serial(owner, async () => {
      const node = await this.#existing(owner, name);
      await this.#items.delete(owner, { with: name });
      await this.#config.set(owner, NODE_KEY + name, undefined);
      this.#remember(cacheKey(owner, name), null);
      this.#volatile.delete(cacheKey(owner, name));
      this.#changed({ owner, node: name, config: true, last: null });
      return node;
    });
  }

  /** Delete every item of a node. */
  purge(owner: string, name: string): Promise<StoredNode> {
    return this.#serial(owner, async () => {
      const node = await this.#existing(owner, name);
      await this.#items.delete(owner, { with: name });
      if (this.#volatile.delete(cacheKey(owner, name))) this.#changed({ owner, node: name, last: null });
      return node;
    });
  }

  /**
   * Publish an item (`<item id?>payload</item>`), creating the node with `options` when it does
   * not exist; with publish-options (`options` given and `preconditions`), an existing node whose
   * configuration differs is a precondition failure (XEP-0060 §7.1.5).
   */
  publish(
    owner: string,
    name: string,
    item: XmlElement | undefined,
    publisher: string,
    options: { config?: Partial<NodeConfig>; preconditions?: boolean; autoCreate?: boolean } = {},
  ): Promise<PublishOutcome> {
    const payloads = item?.getChildren() ?? [];
    if (payloads.length > 1) throw pubsubError('bad-request', 'invalid-payload', 'one payload per item');
    const payload = payloads[0];
    if (payload === undefined) throw pubsubError('bad-request', 'item-required', 'PEP nodes deliver payloads: the item needs one');
    const id = item?.attr('id') || randomBytes(12).toString('base64url');
    if (id.length > 1024) throw pubsubError('not-acceptable', undefined, 'item id too long');
    // The payload keeps its namespace wherever it is written (notifications, item retrieval).
    const stored = xml('item', { id, publisher }, payload.attr('xmlns') === undefined ? payload.with({ xmlns: payload.xmlns }) : payload);
    const text = stored.toString();
    if (Buffer.byteLength(text, 'utf8') > this.limits.maxItemBytes) {
      throw pubsubError('not-acceptable', 'payload-too-big', `items are limited to ${this.limits.maxItemBytes} bytes`);
    }
    return this.#serial(owner, async () => {
      let node = await this.node(owner, name);
      let created = false;
      if (node === undefined) {
        if (options.autoCreate === false) throw pubsubError('item-not-found', undefined, 'no such node');
        node = await this.#create(owner, name, options.config ?? {});
        created = true;
      } else if (options.preconditions === true && options.config !== undefined) {
        const unmet = unmetPrecondition(node.config, options.config);
        if (unmet !== undefined) throw preconditionNotMet(`the node's ${unmet} differs from the publish-options`);
      }
      const when = Date.now();
      const published: PubSubItem = { id, publisher, payload: stored.getChildren()[0], when };
      if (node.config.persistItems) {
        await this.#items.append(owner, { id: archiveId(name, id), when, with: name, xml: text });
        await this.#items.trim(owner, name, node.config.maxItems);
      } else {
        this.#volatile.set(cacheKey(owner, name), published);
        this.#changed({ owner, node: name, last: { xml: text, when } });
      }
      return { node, item: published, created };
    });
  }

  /** Retract items; the ids that existed. */
  retract(owner: string, name: string, ids: readonly string[]): Promise<{ node: StoredNode; retracted: string[] }> {
    return this.#serial(owner, async () => {
      const node = await this.#existing(owner, name);
      const found = await this.items(owner, name, { ids });
      if (found.length === 0) throw pubsubError('item-not-found', undefined, 'no such item');
      const retracted = found.map((item) => item.id);
      if (node.config.persistItems) await this.#items.delete(owner, { ids: retracted.map((id) => archiveId(name, id)) });
      else {
        this.#volatile.delete(cacheKey(owner, name));
        this.#changed({ owner, node: name, last: null });
      }
      return { node, retracted };
    });
  }

  /** Items of a node, oldest first: the newest `max`, or those with these ids. */
  async items(owner: string, name: string, query: { max?: number; ids?: readonly string[] } = {}): Promise<PubSubItem[]> {
    const node = await this.node(owner, name);
    if (node === undefined) return [];
    if (!node.config.persistItems) {
      const last = this.#volatile.get(cacheKey(owner, name));
      if (last === undefined || (query.ids !== undefined && !query.ids.includes(last.id))) return [];
      return [last];
    }
    const max = Math.min(query.max ?? this.limits.maxItemsPerRequest, this.limits.maxItemsPerRequest);
    const result = await this.#items.query(owner, {
      with: name,
      ids: query.ids?.map((id) => archiveId(name, id)),
      before: query.ids === undefined ? '' : undefined,
      max,
    });
    const items: PubSubItem[] = [];
    for (const stored of result.items) {
      if (stored.with !== name) continue;
      const element = parseXml(stored.xml);
      if (element === undefined) continue;
      items.push({
        id: element.attr('id') ?? '',
        publisher: element.attr('publisher'),
        payload: element.getChildren()[0],
        when: stored.when,
      });
    }
    return items;
  }

  /** The newest item of a node. */
  async lastItem(owner: string, name: string): Promise<PubSubItem | undefined> {
    const items = await this.items(owner, name, { max: 1 });
    return items[items.length - 1];
  }

  /** Forget everything of an owner (account removal). */
  async deleteOwner(owner: string): Promise<void> {
    await this.#serial(owner, async () => {
      await this.#items.delete(owner);
      await this.#config.clear(owner);
      this.#forgetOwner(owner, true);
      this.#changed({ owner });
    });
  }

  /** Hear every change made through this service (to tell the other processes sharing the store). */
  onChange(listener: (change: PubSubChange) => void): void {
    this.#changeListeners.push(listener);
  }

  /**
   * Forget the configurations kept of an owner's node (of all its nodes without `name`; of every
   * owner's without either): the next read goes to the store. Last items not persisted stay.
   */
  forget(owner?: string, name?: string): void {
    this.#generation++;
    if (owner === undefined) this.#cache.clear();
    else if (name === undefined) this.#forgetOwner(owner, false);
    else this.#cache.delete(cacheKey(owner, name));
  }

  /** Forget everything kept in memory: configurations and the last items of nodes that do not persist (those are lost). */
  forgetAll(): void {
    this.#generation++;
    this.#cache.clear();
    this.#volatile.clear();
  }

  /** Take a change another process made (what its {@link onChange} gave). Malformed changes are ignored. */
  apply(change: PubSubChange): void {
    const { owner, node: name } = change;
    if (name === undefined) {
      this.#generation++;
      this.#forgetOwner(owner, true);
      return;
    }
    const key = cacheKey(owner, name);
    if (change.config === true) this.forget(owner, name);
    if (change.last === null) this.#volatile.delete(key);
    else if (change.last !== undefined) {
      const element = parseXml(change.last.xml);
      if (element === undefined || element.local !== 'item') return;
      this.#volatile.delete(key);
      this.#volatile.set(key, {
        id: element.attr('id') ?? '',
        publisher: element.attr('publisher'),
        payload: element.getChildren()[0],
        when: change.last.when,
      });
      // Bounded as the configurations are.
      if (this.#volatile.size > 10_000) {
        const oldest = this.#volatile.keys().next().value;
        if (oldest !== undefined) this.#volatile.delete(oldest);
      }
    }
  }

  #forgetOwner(owner: string, volatile: boolean): void {
    const prefix = `${owner}\0`;
    for (const key of [...this.#cache.keys()]) if (key.startsWith(prefix)) this.#cache.delete(key);
    if (volatile) for (const key of [...this.#volatile.keys()]) if (key.startsWith(prefix)) this.#volatile.delete(key);
  }

  #changed(change: PubSubChange): void {
    for (const listener of this.#changeListeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own (pep.ts logs its own).
      }
    }
  }

  async #existing(owner: string, name: string): Promise<StoredNode> {
    const node = await this.node(owner, name);
    if (node === undefined) throw pubsubError('item-not-found', undefined, 'no such node');
    return node;
  }

  async #save(owner: string, name: string, config: NodeConfig): Promise<void> {
    await this.#config.set(owner, NODE_KEY + name, configToJson(config) as JsonValue);
    this.#remember(cacheKey(owner, name), config);
  }

  #remember(key: string, config: NodeConfig | null): void {
    this.#cache.delete(key);
    this.#cache.set(key, config);
    // Bounded: the oldest entries go first.
    if (this.#cache.size > 10_000) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
  }

  #serial<T>(owner: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(owner) ?? Promise.resolve();
    const next = previous.then(run, run);
    const settled = next.catch(() => undefined);
    this.#queues.set(owner, settled);
    void settled.then(() => {
      if (this.#queues.get(owner) === settled) this.#queues.delete(owner);
    });
    return next;
  }
}

/** Archive ids are unique per owner across nodes: the node name (no whitespace in it) and the item id. */
function archiveId(node: string, id: string): string {
  return `${node} ${id}`;
}

function cacheKey(owner: string, name: string): string {
  return `${owner}\0${name}`;
}
