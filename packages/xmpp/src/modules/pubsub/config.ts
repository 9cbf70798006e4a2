// PubSub node configuration (XEP-0060 §16.4.4, FORM_TYPE http://jabber.org/protocol/pubsub#node_config):
// the options a node keeps, their defaults, the configuration form, and publish-options
// (§7.1.5) — preconditions checked against an existing node, or the options of a node that a
// publish creates.

import type { XmlElement } from '../../element.js';
import type { StanzaErrorException } from '../../stanza-error.js';
import type { JsonValue } from '../../stores/types.js';
import { buildDataForm, type DataForm, type DataFormField } from '../data-form.js';
import { pubsubError } from './errors.js';

export const NODE_CONFIG_FORM = 'http://jabber.org/protocol/pubsub#node_config';
export const PUBLISH_OPTIONS_FORM = 'http://jabber.org/protocol/pubsub#publish-options';

/** Who may read a node's items and receive its notifications (XEP-0060 §4.5). */
export type AccessModel = 'open' | 'presence' | 'roster' | 'whitelist';
export const ACCESS_MODELS: readonly AccessModel[] = ['open', 'presence', 'roster', 'whitelist'];

export type SendLastPublishedItem = 'never' | 'on_sub' | 'on_sub_and_presence';
const SEND_LAST: readonly SendLastPublishedItem[] = ['never', 'on_sub', 'on_sub_and_presence'];

export type ItemReply = 'owner' | 'publisher';

/** A node's configuration, as stored (JSON). */
export interface NodeConfig {
  title: string;
  accessModel: AccessModel;
  /** `roster` access: the roster groups allowed. */
  rosterGroupsAllowed: string[];
  persistItems: boolean;
  /** Items kept (the service's per-node limit at most). */
  maxItems: number;
  deliverNotifications: boolean;
  deliverPayloads: boolean;
  notifyRetract: boolean;
  notifyDelete: boolean;
  sendLastPublishedItem: SendLastPublishedItem;
  itemReply: ItemReply;
  /** The payload type (a namespace), informational. */
  type: string;
}

/** PEP's defaults (XEP-0163 §5 and what Prosody's mod_pep uses). */
export function defaultNodeConfig(): NodeConfig {
  return {
    title: '',
    accessModel: 'presence',
    rosterGroupsAllowed: [],
    persistItems: true,
    maxItems: 1,
    deliverNotifications: true,
    deliverPayloads: true,
    notifyRetract: true,
    notifyDelete: true,
    sendLastPublishedItem: 'on_sub_and_presence',
    itemReply: 'owner',
    type: '',
  };
}

/** Read a stored configuration, filling what an older version did not store with the defaults. */
export function configFromJson(value: JsonValue | undefined): NodeConfig {
  const config = defaultNodeConfig();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return config;
  const stored = value as Record<string, JsonValue>;
  const merged = { ...config } as unknown as Record<string, JsonValue>;
  for (const [key, defaultValue] of Object.entries(config)) {
    const candidate = stored[key];
    if (candidate !== undefined && typeof candidate === typeof defaultValue) merged[key] = candidate;
  }
  return merged as unknown as NodeConfig;
}

export function configToJson(config: NodeConfig): JsonValue {
  return { ...config } as unknown as JsonValue;
}

/** The form fields, by `var`, and how each maps onto {@link NodeConfig}. */
const FIELDS = {
  'pubsub#title': 'title',
  'pubsub#access_model': 'accessModel',
  'pubsub#roster_groups_allowed': 'rosterGroupsAllowed',
  'pubsub#persist_items': 'persistItems',
  'pubsub#max_items': 'maxItems',
  'pubsub#deliver_notifications': 'deliverNotifications',
  'pubsub#deliver_payloads': 'deliverPayloads',
  'pubsub#notify_retract': 'notifyRetract',
  'pubsub#notify_delete': 'notifyDelete',
  'pubsub#send_last_published_item': 'sendLastPublishedItem',
  'pubsub#itemreply': 'itemReply',
  'pubsub#type': 'type',
} as const satisfies Record<string, keyof NodeConfig>;

type FieldName = keyof typeof FIELDS;
/** Every field a node configuration form (or publish-options) may carry. */
export const CONFIG_FIELDS = Object.keys(FIELDS) as FieldName[];

/** The configuration form the owner gets (§8.2). */
export function configForm(config: NodeConfig, maxItemsLimit: number): XmlElement {
  const fields: DataFormField[] = [
    { var: 'pubsub#title', type: 'text-single', label: 'A friendly name for the node', values: [config.title] },
    {
      var: 'pubsub#access_model',
      type: 'list-single',
      label: 'Specify the access model',
      values: [config.accessModel],
      options: ACCESS_MODELS.map((value) => ({ value })),
    },
    { var: 'pubsub#roster_groups_allowed', type: 'list-multi', label: 'Roster groups allowed', values: config.rosterGroupsAllowed },
    { var: 'pubsub#persist_items', type: 'boolean', label: 'Persist items to storage', values: [flag(config.persistItems)] },
    {
      var: 'pubsub#max_items',
      type: 'text-single',
      label: `Max number of items to persist (at most ${maxItemsLimit}, or 'max')`,
      values: [String(config.maxItems)],
    },
    {
      var: 'pubsub#deliver_notifications',
      type: 'boolean',
      label: 'Deliver event notifications',
      values: [flag(config.deliverNotifications)],
    },
    {
      var: 'pubsub#deliver_payloads',
      type: 'boolean',
      label: 'Deliver payloads with event notifications',
      values: [flag(config.deliverPayloads)],
    },
    {
      var: 'pubsub#notify_retract',
      type: 'boolean',
      label: 'Notify subscribers when items are removed',
      values: [flag(config.notifyRetract)],
    },
    {
      var: 'pubsub#notify_delete',
      type: 'boolean',
      label: 'Notify subscribers when the node is deleted',
      values: [flag(config.notifyDelete)],
    },
    {
      var: 'pubsub#send_last_published_item',
      type: 'list-single',
      label: 'When to send the last published item',
      values: [config.sendLastPublishedItem],
      options: SEND_LAST.map((value) => ({ value })),
    },
    {
      var: 'pubsub#itemreply',
      type: 'list-single',
      label: 'Whom to address replies to',
      values: [config.itemReply],
      options: [{ value: 'owner' }, { value: 'publisher' }],
    },
    { var: 'pubsub#type', type: 'text-single', label: 'The type of node data, usually a namespace', values: [config.type] },
  ];
  return buildDataForm({ type: 'form', formType: NODE_CONFIG_FORM, fields });
}

function flag(value: boolean): string {
  return value ? '1' : '0';
}

/**
 * The values a submitted form asks for, validated (fields outside {@link CONFIG_FIELDS} are
 * ignored: a service need not support every option a client knows). `invalid` decides the error
 * for a value out of range: `not-acceptable` for a configuration, a precondition failure for
 * publish-options.
 */
export function requestedConfig(
  form: DataForm,
  maxItemsLimit: number,
  invalid: (text: string) => StanzaErrorException,
): Partial<NodeConfig> {
  const changes: Partial<NodeConfig> = {};
  const bool = (name: FieldName): boolean | undefined => {
    const value = form.value(name)?.toLowerCase();
    if (value === undefined) return undefined;
    // 'True' as some libraries write it (slixmpp's xep_0223) is taken for what it means.
    if (value === '1' || value === 'true') return true;
    if (value === '0' || value === 'false') return false;
    throw invalid(`${name} is not a boolean`);
  };
  for (const name of CONFIG_FIELDS) {
    if (!form.has(name)) continue;
    switch (name) {
      case 'pubsub#title':
      case 'pubsub#type':
        changes[FIELDS[name]] = form.value(name) ?? '';
        break;
      case 'pubsub#access_model': {
        const value = form.value(name);
        if (value === undefined || !(ACCESS_MODELS as readonly string[]).includes(value))
          throw invalid(`access model '${value}' is not supported`);
        changes.accessModel = value as AccessModel;
        break;
      }
      case 'pubsub#roster_groups_allowed':
        changes.rosterGroupsAllowed = [...form.values(name)];
        break;
      case 'pubsub#max_items': {
        const value = form.value(name);
        changes.maxItems = parseMaxItems(value, maxItemsLimit, invalid);
        break;
      }
      case 'pubsub#send_last_published_item': {
        const value = form.value(name);
        if (value === undefined || !(SEND_LAST as readonly string[]).includes(value))
          throw invalid(`send_last_published_item '${value}' is not supported`);
        changes.sendLastPublishedItem = value as SendLastPublishedItem;
        break;
      }
      case 'pubsub#itemreply': {
        const value = form.value(name);
        if (value !== 'owner' && value !== 'publisher') throw invalid(`itemreply '${value}' is not supported`);
        changes.itemReply = value;
        break;
      }
      default: {
        const value = bool(name);
        if (value !== undefined) (changes as Record<string, boolean>)[FIELDS[name]] = value;
      }
    }
  }
  return changes;
}

/** `max_items`: a positive count up to the limit, or `max` (XEP-0060 §16.4.4, 1.15.0). */
function parseMaxItems(value: string | undefined, limit: number, invalid: (text: string) => StanzaErrorException): number {
  if (value === 'max') return limit;
  if (value === undefined || !/^\d{1,9}$/.test(value)) throw invalid(`max_items '${value}' is not a number`);
  const count = Number(value);
  if (count < 1 || count > limit) throw invalid(`max_items must be between 1 and ${limit} (or 'max')`);
  return count;
}

/** The first option of `requested` whose value differs from the node's (publish-options preconditions). */
export function unmetPrecondition(config: NodeConfig, requested: Partial<NodeConfig>): string | undefined {
  for (const [key, value] of Object.entries(requested) as Array<[keyof NodeConfig, NodeConfig[keyof NodeConfig]]>) {
    const current = config[key];
    const same = Array.isArray(value) && Array.isArray(current) ? sameSet(value, current) : value === current;
    if (!same) return key;
  }
  return undefined;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value) => b.includes(value));
}

/** `<conflict/>` with `<precondition-not-met/>` (XEP-0060 §7.1.5). */
export function preconditionNotMet(text: string): StanzaErrorException {
  return pubsubError('conflict', 'precondition-not-met', text);
}
