// Private XML storage (XEP-0049 v1.2): a client stores and reads back elements by their name and
// namespace under its own account (`jabber:iq:private`, to the user's own JID only). Kept in the
// 'private' key-value store (owner = localpart, key = `name:namespace`, value = the XML text).
// Another module can take a namespace over (bookmarks.ts answers `storage:bookmarks` from PEP,
// XEP-0402 §5.3 compatibility).

import type { XmlElement } from '../element.js';
import { xml } from '../element.js';
import type { ModuleApi, XmppModule } from '../module.js';
import { NS_PRIVATE } from '../namespaces.js';
import { parseXml } from '../parse.js';
import { StanzaErrorException } from '../stanza-error.js';
import { wholeNumber } from './pubsub/options.js';

export interface PrivateOptions {
  /** Largest stored element (serialized, bytes); past it `<not-acceptable/>`. Default 64 KiB. */
  maxItemBytes?: number;
  /** Total stored per account (bytes); past it `<not-acceptable/>`. Default 1 MiB. */
  maxTotalBytes?: number;
  /** Elements stored per account. Default 100. */
  maxItems?: number;
}

/** A namespace's storage handled by another module (the user's localpart; the element as the client sent it). */
export interface PrivateHandler {
  get(user: string, requested: XmlElement): Promise<XmlElement>;
  set(user: string, element: XmlElement): Promise<void>;
}

const handlers = new WeakMap<object, Map<string, PrivateHandler>>();

/** Let a module answer one namespace of private storage for a server (its `api.server`). */
export function privateStorageHandler(server: object, namespace: string, handler: PrivateHandler): void {
  let map = handlers.get(server);
  if (map === undefined) {
    map = new Map();
    handlers.set(server, map);
  }
  map.set(namespace, handler);
}

export function privateStorage(options: PrivateOptions = {}): XmppModule {
  const maxItemBytes = wholeNumber('private', 'maxItemBytes', options.maxItemBytes, 64 * 1024);
  const maxTotalBytes = wholeNumber('private', 'maxTotalBytes', options.maxTotalBytes, 1024 * 1024);
  const maxItems = wholeNumber('private', 'maxItems', options.maxItems, 100);
  return {
    name: 'private',
    setup(api: ModuleApi) {
      const store = api.keyValue('private');
      const key = (element: XmlElement): string => `${element.local}:${element.xmlns}`;

      const get = async (user: string, requested: XmlElement): Promise<XmlElement> => {
        const handler = handlers.get(api.server)?.get(requested.xmlns);
        if (handler !== undefined) return handler.get(user, requested);
        const stored = await store.get(user, key(requested));
        const element = typeof stored === 'string' ? parseXml(stored) : undefined;
        // Nothing stored: the empty element back (§3.2).
        return element ?? xml(requested.local, { xmlns: requested.xmlns });
      };

      const set = async (user: string, elements: XmlElement[]): Promise<void> => {
        // Check everything before writing anything.
        const writes: Array<{ key: string; text: string | undefined }> = [];
        for (const element of elements) {
          const handler = handlers.get(api.server)?.get(element.xmlns);
          if (handler !== undefined) continue;
          const stored = element.attr('xmlns') === undefined ? element.with({ xmlns: element.xmlns }) : element;
          const text = stored.toString();
          if (Buffer.byteLength(text, 'utf8') > maxItemBytes) {
            throw new StanzaErrorException('not-acceptable', `private XML is limited to ${maxItemBytes} bytes per element`);
          }
          // An empty element clears what was stored.
          writes.push({
            key: key(element),
            text: element.children.length === 0 && Object.keys(element.attrs).every((a) => a.startsWith('xmlns')) ? undefined : text,
          });
        }
        const keys = await store.keys(user);
        let total = 0;
        let count = keys.length;
        for (const existing of keys) {
          const write = writes.find((w) => w.key === existing);
          if (write !== undefined) {
            count--;
            continue;
          }
          const value = await store.get(user, existing);
          if (typeof value === 'string') total += Buffer.byteLength(value, 'utf8');
        }
        for (const write of writes) {
          if (write.text === undefined) continue;
          count++;
          total += Buffer.byteLength(write.text, 'utf8');
        }
        if (count > maxItems || total > maxTotalBytes) {
          throw new StanzaErrorException(
            'not-acceptable',
            `private XML storage is limited to ${maxItems} elements and ${maxTotalBytes} bytes per account`,
          );
        }
        for (const write of writes) await store.set(user, write.key, write.text);
        for (const element of elements) {
          const handler = handlers.get(api.server)?.get(element.xmlns);
          if (handler !== undefined) await handler.set(user, element);
        }
      };

      api.iq({ xmlns: NS_PRIVATE, element: 'query', to: 'self' }, async (iq, context) => {
        const user = context.to.local;
        const elements = context.payload.getChildren();
        // §3: exactly one child on a get, at least one on a set; the reserved namespaces (jabber:*, vcard-temp) refused.
        for (const element of elements) {
          if (element.xmlns === '' || element.xmlns.startsWith('jabber:') || element.xmlns === 'vcard-temp') {
            throw new StanzaErrorException('not-acceptable', `the namespace ${element.xmlns || '(none)'} is reserved`);
          }
        }
        if (iq.attr('type') === 'get') {
          if (elements.length !== 1) throw new StanzaErrorException('not-acceptable', 'ask for one element');
          return xml('query', { xmlns: NS_PRIVATE }, await get(user, elements[0] as XmlElement));
        }
        if (elements.length === 0) throw new StanzaErrorException('not-acceptable', 'store at least one element');
        await set(user, elements);
        return undefined;
      });

      api.hook('account/deleted', async ({ user }) => {
        await store.clear(user);
      });
    },
  };
}
