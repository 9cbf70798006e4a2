// Result set management (XEP-0059 v1.0): the paging of MAM queries and PubSub item lists. A
// request's `<set/>` names a page size (`max`) and where the page starts (`after` an id, `before`
// an id, `<before/>` empty for the last page, or an `index`); the answer's `<set/>` names the
// page's `first` and `last` ids and how many items match in all (`count`).

import { type XmlElement, xml } from '../element.js';
import { NS_RSM } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';

/** A parsed request `<set/>`. */
export interface RsmRequest {
  /** The page size, capped at the service's limit: the requested `max`, or the default. */
  max: number;
  /** Whether the client asked for `max` itself (a `<max>0</max>` asks for the count only, §2.7). */
  maxGiven: boolean;
  /** Items after this id. */
  after?: string;
  /** Items before this id; `''` (an empty `<before/>`) means the last page (§2.5). */
  before?: string;
  /** The index of the first item of the page (§2.4). */
  index?: number;
}

export interface RsmLimits {
  /** The page size when the request names none. */
  defaultMax: number;
  /** The largest page served: a bigger `max` is capped to it (as Prosody caps at `max_archive_query_results`). */
  maxCap: number;
}

/** The longest UID accepted in `<after/>`/`<before/>`; longer ones cannot be ours. */
const MAX_ID_LENGTH = 1023;

function parseCount(element: XmlElement, name: string): number {
  const text = element.text().trim();
  // A decimal non-negative integer (xs:int); a million parses and is capped by the caller.
  if (!/^\d{1,10}$/.test(text)) throw new StanzaErrorException('bad-request', `RSM <${name}/> must be a non-negative integer`);
  const value = Number(text);
  if (value > 2_147_483_647) throw new StanzaErrorException('bad-request', `RSM <${name}/> is out of range`);
  return value;
}

function parseId(element: XmlElement, name: string): string {
  const id = element.text();
  if (id.length > MAX_ID_LENGTH) throw new StanzaErrorException('item-not-found', `no item with that <${name}/> id`);
  return id;
}

/**
 * Parse a request's `<set xmlns='http://jabber.org/protocol/rsm'>` (absent: the default page).
 * A malformed one (`max` or `index` not a non-negative integer, an empty `<after/>`, `<after/>`
 * with `<index/>`) is `bad-request`. `max` is capped at `limits.maxCap`.
 */
export function parseRsm(set: XmlElement | undefined, limits: RsmLimits): RsmRequest {
  const request: RsmRequest = { max: Math.min(limits.defaultMax, limits.maxCap), maxGiven: false };
  if (set === undefined) return request;
  if (set.local !== 'set' || set.xmlns !== NS_RSM) throw new StanzaErrorException('bad-request', 'not an RSM <set/>');
  const max = set.getChild('max', NS_RSM);
  if (max !== undefined) {
    request.max = Math.min(parseCount(max, 'max'), limits.maxCap);
    request.maxGiven = true;
  }
  const after = set.getChild('after', NS_RSM);
  if (after !== undefined) {
    const id = parseId(after, 'after');
    if (id === '') throw new StanzaErrorException('bad-request', 'RSM <after/> must name an item');
    request.after = id;
  }
  const before = set.getChild('before', NS_RSM);
  if (before !== undefined) request.before = parseId(before, 'before');
  const index = set.getChild('index', NS_RSM);
  if (index !== undefined) {
    if (request.after !== undefined || request.before !== undefined) {
      throw new StanzaErrorException('bad-request', 'RSM <index/> cannot be combined with <after/> or <before/>');
    }
    request.index = parseCount(index, 'index');
  }
  return request;
}

/** What an answer's `<set/>` says about the page. */
export interface RsmAnswer {
  /** The first item's id (absent for an empty page). */
  first?: string;
  /** The first item's index in the full result set. */
  firstIndex?: number;
  /** The last item's id (absent for an empty page). */
  last?: string;
  /** How many items match in all. */
  count?: number;
}

/** Build the answer `<set xmlns='http://jabber.org/protocol/rsm'>` (§2.1: first, last, count). */
export function buildRsmAnswer(answer: RsmAnswer): XmlElement {
  const set = xml('set', { xmlns: NS_RSM });
  if (answer.first !== undefined) set.append(xml('first', { index: answer.firstIndex?.toString() }, answer.first));
  if (answer.last !== undefined) set.append(xml('last', {}, answer.last));
  if (answer.count !== undefined) set.append(xml('count', {}, answer.count.toString()));
  return set;
}
