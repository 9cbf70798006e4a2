// Discussion history sent on join (XEP-0045 §7.2.14/§7.2.15), as Prosody's muc/history.lib.lua:
// the room keeps its last `historyLength` messages; a joining occupant's `<history/>` narrows them
// by count (maxstanzas), size (maxchars, counted over each message as sent) and age (seconds,
// since). Each goes out with the time it was sent (XEP-0203 `<delay/>`).

import type { XmlElement } from '../../element.js';

/** One message of the room's history: the message as broadcast (from the occupant's room JID), without `to`. */
export interface HistoryEntry {
  message: XmlElement;
  when: number;
  /** Its length as sent, for maxchars. */
  chars: number;
}

export interface HistoryRequest {
  maxStanzas?: number;
  maxChars?: number;
  seconds?: number;
  since?: number;
}

/** XEP-0082 DateTime. */
const DATETIME = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/** The `<history/>` of a join (absent: everything the room keeps). Malformed attributes are ignored, as Prosody does. */
export function parseHistoryRequest(history: XmlElement | undefined): HistoryRequest {
  const request: HistoryRequest = {};
  if (history === undefined) return request;
  const count = (name: string): number | undefined => {
    const text = history.attr(name);
    if (text === undefined || !/^\d{1,10}$/.test(text.trim())) return undefined;
    return Number(text.trim());
  };
  request.maxStanzas = count('maxstanzas');
  request.maxChars = count('maxchars');
  request.seconds = count('seconds');
  const since = history.attr('since');
  if (since !== undefined && DATETIME.test(since)) {
    const ms = Date.parse(since);
    if (!Number.isNaN(ms)) request.since = ms;
  }
  return request;
}

/** The entries to send, oldest first: the newest that fit every limit of the request. */
export function selectHistory(entries: readonly HistoryEntry[], request: HistoryRequest, now: number): HistoryEntry[] {
  let from = entries.length;
  let chars = 0;
  const maxStanzas = request.maxStanzas ?? Number.POSITIVE_INFINITY;
  const maxChars = request.maxChars ?? Number.POSITIVE_INFINITY;
  const oldest = Math.max(request.seconds === undefined ? 0 : now - request.seconds * 1000, request.since ?? 0);
  while (from > 0) {
    const entry = entries[from - 1] as HistoryEntry;
    if (entries.length - from >= maxStanzas) break;
    if (entry.when < oldest) break;
    if (chars + entry.chars > maxChars) break;
    chars += entry.chars;
    from--;
  }
  return entries.slice(from);
}
