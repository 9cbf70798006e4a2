// The room's message archive (XEP-0313 v1.1 on the room JID, §5 "MUC archives"), as Prosody's
// mod_muc_mam: a groupchat message with a body is archived under the room with `with` set to the
// sender's occupant JID; queries page with RSM (XEP-0059) and filter with the urn:xmpp:mam:2 form
// (with, start, end, before-id, after-id, ids), parsed with the shared data-form and RSM helpers.

import { XmlElement, xml } from '../../element.js';
import { Jid } from '../../jid.js';
import { NS_CLIENT, NS_DELAY, NS_FORWARD, NS_MAM, NS_RSM } from '../../namespaces.js';
import { parseXml } from '../../parse.js';
import { StanzaErrorException } from '../../stanza-error.js';
import type { ArchiveQuery, ArchiveStore } from '../../stores/types.js';
import { DataFormError, parseDataForm } from '../data-form.js';
import { mamQueryForm } from '../mam.js';
import { buildRsmAnswer, parseRsm, type RsmLimits } from '../rsm.js';

const QUERY_FIELDS: ReadonlySet<string> = new Set(['with', 'start', 'end', 'before-id', 'after-id', 'ids']);
const MAX_QUERY_ID = 256;
/** XEP-0082 DateTime. */
const DATETIME = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/** §4.1.5: the fields a query may use (the same form as an account's archive). */
export function roomMamForm(): XmlElement {
  return mamQueryForm();
}

/** Run a query on a room's archive: the `<forwarded/>` of each result, oldest first, and the `<fin/>`. */
export async function roomMamQuery(
  archive: ArchiveStore,
  room: string,
  query: XmlElement,
  limits: RsmLimits,
): Promise<{ items: Array<{ id: string; forwarded: XmlElement }>; fin: XmlElement }> {
  const queryId = query.attr('queryid');
  if (queryId !== undefined && queryId.length > MAX_QUERY_ID) throw new StanzaErrorException('bad-request', 'queryid is too long');
  const rsm = parseRsm(query.getChild('set', NS_RSM), limits);
  if (rsm.index !== undefined) throw new StanzaErrorException('feature-not-implemented', 'RSM <index/> is not supported on the archive');
  const filter: ArchiveQuery & { max: number } = { max: rsm.max };
  const x = query.getChild('x', 'jabber:x:data');
  if (x !== undefined) {
    const form = parseDataForm(x);
    if (form.formType !== NS_MAM) throw new DataFormError(`FORM_TYPE must be '${NS_MAM}'`);
    for (const name of form.fields.keys()) {
      if (!QUERY_FIELDS.has(name)) throw new StanzaErrorException('feature-not-implemented', `unknown query field '${name}'`);
    }
    // In a room's archive `with` is an occupant JID (room@service/nick).
    const withJid = form.jid('with');
    if (withJid !== undefined) filter.with = withJid.toString();
    const start = timestamp(form.value('start'), 'start');
    const end = timestamp(form.value('end'), 'end');
    if (start !== undefined) filter.start = start;
    if (end !== undefined) filter.end = end;
    const afterId = form.value('after-id');
    const beforeId = form.value('before-id');
    if (afterId !== undefined) filter.after = afterId;
    if (beforeId !== undefined) filter.before = beforeId;
    if (form.has('ids')) {
      const ids = form.values('ids');
      if (ids.length === 0 || ids.includes('')) throw new DataFormError("'ids' must name messages");
      filter.ids = [...new Set(ids)];
    }
  }
  if (rsm.after !== undefined) filter.after = rsm.after;
  if (rsm.before !== undefined) filter.before = rsm.before;
  const result = await archive.query(room, filter);
  const found = filter.max === 0 ? [] : result.items;
  const items: Array<{ id: string; forwarded: XmlElement }> = [];
  for (const item of found) {
    const parsed = parseXml(item.xml);
    if (parsed === undefined) continue;
    // Forwarded (XEP-0297), the message keeps its own namespace.
    const message = new XmlElement(parsed.name, { xmlns: NS_CLIENT, ...parsed.attrs }, parsed.children, NS_CLIENT);
    const from = Jid.parse(message.attr('from') ?? '');
    if (from === undefined) continue;
    items.push({
      id: item.id,
      forwarded: xml(
        'forwarded',
        { xmlns: NS_FORWARD },
        xml('delay', { xmlns: NS_DELAY, stamp: new Date(item.when).toISOString().replace('.000Z', 'Z') }),
        message,
      ),
    });
  }
  const flipped = query.getChild('flip-page', NS_MAM) !== undefined ? [...items].reverse() : items;
  const first = found[0];
  const last = found[found.length - 1];
  const fin = xml(
    'fin',
    { xmlns: NS_MAM, queryid: queryId, complete: result.complete || (filter.max === 0 && result.count === 0) ? 'true' : undefined },
    buildRsmAnswer({ first: first?.id, last: last?.id, count: result.count }),
  );
  return { items: flipped, fin };
}

function timestamp(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = DATETIME.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new DataFormError(`'${name}' is not an XEP-0082 timestamp: '${value}'`);
  return ms;
}
