// A small PubSub core (XEP-0060): nodes per owner with their configuration, items, limits. It
// knows nothing of who asks: the protocol layer (PEP, pep.ts) checks access and sends the
// notifications this returns. Configuration is kept in a key-value store (owner, `node:` + name),
// persistent items in an archive store (owner, `with` = node name, `id` = item id), items of
// nodes that do not persist in memory (the last one only, for "last published item").

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
      const stored = await this.#config.get(owner, NODE_KEY + name);
      config = stored === undefined ? null : configFromJson(stored);
      this.#remember(key, config);
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
      return node;
    });
  }

  /** Delete every item of a node. */
  purge(owner: string, name: string): Promise<StoredNode> {
    return this.#serial(owner, async () => {
      const node = await this.#existing(owner, name);
      await this.#items.delete(owner, { with: name });
      this.#volatile.delete(cacheKey(owner, name));
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
      else this.#volatile.delete(cacheKey(owner, name));
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
      for (const key of [...this.#cache.keys(), ...this.#volatile.keys()]) {
        if (key.startsWith(`${owner}\0`)) {
          this.#cache.delete(key);
          this.#volatile.delete(key);
        }
      }
    });
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
