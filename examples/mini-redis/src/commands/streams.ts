import { OK, type ReplyValue, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { integer } from '../config.js';
import { helpReply } from '../help.js';
import { int64Arg } from '../numbers.js';
import { bytesOf, type Database, keyOf } from '../store.js';
import { type Consumer, type Entry, formatId, Group, MAX_ID, makeId, msOf, SEQ_MASK, Stream, type StreamId, seqOf } from '../stream.js';

// Streams as Redis 7.0's t_stream.c: XADD, XRANGE, XREAD, consumer groups, XINFO; the same
// errors, reply shapes and keyspace events.

const group = 'stream';
const text = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1');
const upper = (arg: Buffer | undefined): string => text(arg).toUpperCase();

const INVALID_ID = 'ERR Invalid stream ID specified as stream command argument';
const U64_MAX = SEQ_MASK;

/** Redis's string2ull: a decimal unsigned 64-bit integer. */
function u64(part: string): bigint | undefined {
  if (!/^\+?\d+$/.test(part)) return undefined;
  const value = BigInt(part);
  return value <= U64_MAX ? value : undefined;
}

interface ParsedId {
  id: StreamId;
  /** False for `<ms>-*` (XADD: the sequence is generated). */
  seqGiven: boolean;
}

/** Redis's streamGenericParseIDOrReply: `-`, `+` (unless strict), `<ms>`, `<ms>-<seq>`, `<ms>-*` (when allowed). */
function parseId(arg: Buffer | string, missingSeq: bigint, strict: boolean, allowSeqStar = false): ParsedId {
  const raw = typeof arg === 'string' ? arg : text(arg);
  if (raw.length > 127) throw new RespError(INVALID_ID);
  if (strict && (raw === '-' || raw === '+')) throw new RespError(INVALID_ID);
  if (raw === '-') return { id: 0n, seqGiven: true };
  if (raw === '+') return { id: MAX_ID, seqGiven: true };
  const dash = raw.indexOf('-');
  const ms = u64(dash === -1 ? raw : raw.slice(0, dash));
  if (ms === undefined) throw new RespError(INVALID_ID);
  if (dash === -1) return { id: makeId(ms, missingSeq), seqGiven: true };
  const seqText = raw.slice(dash + 1);
  if (allowSeqStar && seqText === '*') return { id: makeId(ms, 0n), seqGiven: false };
  const seq = u64(seqText);
  if (seq === undefined) throw new RespError(INVALID_ID);
  return { id: makeId(ms, seq), seqGiven: true };
}

/** A range bound: `(` makes it exclusive (streamParseIntervalIDOrReply). */
function parseInterval(arg: Buffer, missingSeq: bigint): { id: StreamId; exclusive: boolean } {
  const raw = text(arg);
  if (raw.length > 1 && raw[0] === '(') return { id: parseId(raw.slice(1), missingSeq, true).id, exclusive: true };
  return { id: parseId(raw, missingSeq, false).id, exclusive: false };
}

/** The ID after `id` (streamIncrID), or undefined past the last. */
const nextId = (id: StreamId): StreamId | undefined =>
  id === MAX_ID ? undefined : seqOf(id) === U64_MAX ? makeId(msOf(id) + 1n, 0n) : id + 1n;

function rangeStart(arg: Buffer): StreamId {
  const { id, exclusive } = parseInterval(arg, 0n);
  if (!exclusive) return id;
  const next = nextId(id);
  if (next === undefined) throw new RespError('ERR invalid start ID for the interval');
  return next;
}

function rangeEnd(arg: Buffer): StreamId {
  const { id, exclusive } = parseInterval(arg, U64_MAX);
  if (!exclusive) return id;
  if (id === 0n) throw new RespError('ERR invalid end ID for the interval');
  return seqOf(id) === 0n ? makeId(msOf(id) - 1n, U64_MAX) : id - 1n;
}

const entryReply = (entry: Entry): ReplyValue => [formatId(entry.id), [...entry.fields]];

/** Consumers and groups are listed in name order (Redis keeps them in radix trees). */
const byName = <T>(map: ReadonlyMap<string, T>): Array<[string, T]> => [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

interface TrimArgs {
  strategy: 'maxlen' | 'minid' | undefined;
  threshold: bigint;
  approx: boolean;
  limit: number;
  /** The trimming argument's index (XADD). */
  noMkStream: boolean;
  id: ParsedId | undefined;
  /** XADD: where the ID is. */
  idIndex: number;
  /** Where the MAXLEN/MINID threshold and the LIMIT count are (-1: absent), for the replayed form. */
  thresholdIndex: number;
  limitIndex: number;
}

export function registerStreamCommands({ resp, keyspace, blocked, config, propagation }: MiniRedis): void {
  const node = { maxEntries: 100, maxBytes: 4096 };
  config.set(
    'stream-node-max-entries',
    integer(
      0,
      2n ** 63n - 1n,
      () => node.maxEntries,
      (value) => {
        node.maxEntries = value;
      },
    ),
  );
  config.set(
    'stream-node-max-bytes',
    integer(
      0,
      2n ** 63n - 1n,
      () => node.maxBytes,
      (value) => {
        node.maxBytes = value;
      },
    ),
  );

  const readStream = (db: Database, key: string): Stream | undefined => db.read(key, 'stream');

  // Clients blocked in XREADGROUP must learn when their key is deleted, overwritten or flushed (an
  // error), XREAD ones when a key they wait on is a stream again: every write to a key someone
  // waits on in XREAD/XREADGROUP signals it once the running command is done (Redis serves
  // blocked clients after the command, too).
  const waited = new Map<string, number>();
  const watchKey = (db: number, key: string, delta: number): void => {
    const id = `${db}\u0000${key}`;
    const count = (waited.get(id) ?? 0) + delta;
    if (count > 0) waited.set(id, count);
    else waited.delete(id);
  };
  const signalLater = (db: number, key: string): void => {
    queueMicrotask(() => blocked.signal(db, key));
  };
  const touch = resp.touch.bind(resp);
  resp.touch = (db, key) => {
    touch(db, key);
    if (waited.size > 0 && waited.has(`${db}\u0000${key}`)) signalLater(db, key);
  };
  const touchAll = resp.touchAll.bind(resp);
  resp.touchAll = (db, exists) => {
    touchAll(db, exists);
    for (const id of waited.keys()) {
      const at = id.indexOf('\u0000');
      const index = Number(id.slice(0, at));
      if (db === -1 || index === db) signalLater(index, id.slice(at + 1));
    }
  };
  const written = (client: RespClient, key: string, event: string): void => {
    resp.touch(client.db, key);
    resp.notifyKeyspaceEvent('stream', event, key, client.db);
  };

  /** streamParseAddOrTrimArgsOrReply. */
  const parseAddOrTrim = (argv: Buffer[], xadd: boolean): TrimArgs => {
    const args: TrimArgs = {
      strategy: undefined,
      threshold: 0n,
      approx: false,
      limit: 0,
      noMkStream: false,
      id: undefined,
      idIndex: -1,
      thresholdIndex: -1,
      limitIndex: -1,
    };
    let limitGiven = false;
    let i = 2;
    for (; i < argv.length; i++) {
      const more = argv.length - 1 - i;
      const option = upper(argv[i]);
      if (xadd && text(argv[i]) === '*') break;
      if ((option === 'MAXLEN' || option === 'MINID') && more > 0) {
        if (args.strategy !== undefined) {
          throw new RespError('ERR syntax error, MAXLEN and MINID options at the same time are not compatible');
        }
        args.approx = false;
        const next = text(argv[i + 1]);
        if (more >= 2 && next === '~') {
          args.approx = true;
          i++;
        } else if (more >= 2 && next === '=') i++;
        args.thresholdIndex = i + 1;
        if (option === 'MAXLEN') {
          args.threshold = int64Arg(argv[i + 1]);
          if (args.threshold < 0n) throw new RespError('ERR The MAXLEN argument must be >= 0.');
          args.strategy = 'maxlen';
        } else {
          args.threshold = parseId(argv[i + 1] as Buffer, 0n, true).id;
          args.strategy = 'minid';
        }
        i++;
      } else if (option === 'LIMIT' && more > 0) {
        const limit = int64Arg(argv[i + 1]);
        if (limit < 0n) throw new RespError('ERR The LIMIT argument must be >= 0.');
        args.limit = Number(limit);
        args.limitIndex = i + 1;
        limitGiven = true;
        i++;
      } else if (xadd && option === 'NOMKSTREAM') args.noMkStream = true;
      else if (xadd) {
        args.id = parseId(argv[i] as Buffer, 0n, true, true);
        break;
      } else throw new RespError('ERR syntax error');
    }
    args.idIndex = i;
    if (args.limit > 0 && args.strategy === undefined) {
      throw new RespError('ERR syntax error, LIMIT cannot be used without specifying a trimming strategy');
    }
    if (!xadd && args.strategy === undefined) throw new RespError('ERR syntax error, XTRIM must be called with a trimming strategy');
    if (limitGiven) {
      if (!args.approx) throw new RespError('ERR syntax error, LIMIT cannot be used without the special ~ option');
    } else if (args.approx) {
      args.limit = Math.min(Math.max(100 * node.maxEntries, 0) || 10000, 1000000);
    } else args.limit = 0;
    return args;
  };

  /**
   * XADD as it replays (AOF, replicas): with the ID it got, and a `~` trim as the exact one it came
   * to (`=` and the length or first ID left, without LIMIT), as Redis's xaddCommand rewrites it.
   */
  const replayedXadd = (argv: Buffer[], args: TrimArgs, id: StreamId, stream: Stream): Array<Buffer | string> => {
    const out: Array<Buffer | string> = [...argv];
    if (args.id === undefined || !args.id.seqGiven) out[args.idIndex] = formatId(id);
    if (args.approx && args.strategy !== undefined) {
      out[args.thresholdIndex - 1] = '=';
      out[args.thresholdIndex] = args.strategy === 'maxlen' ? String(stream.length) : formatId(stream.edge(false)?.id ?? MAX_ID);
    }
    if (args.limitIndex !== -1) out.splice(args.limitIndex - 1, 2);
    return out;
  };

  /** A delivery or claim replays as Redis's streamPropagateXCLAIM: an XCLAIM … FORCE JUSTID with the group's last ID. */
  const claimReplay = (
    key: string,
    groupName: string,
    cg: Group,
    id: StreamId,
    consumer: string,
    nack: { deliveryTime: number; deliveryCount: number },
  ) => [
    'XCLAIM',
    bytesOf(key),
    bytesOf(groupName),
    bytesOf(consumer),
    '0',
    formatId(id),
    'TIME',
    String(nack.deliveryTime),
    'RETRYCOUNT',
    String(nack.deliveryCount),
    'FORCE',
    'JUSTID',
    'LASTID',
    formatId(cg.lastId),
  ];

  const trim = (stream: Stream, args: TrimArgs): number =>
    args.strategy === undefined ? 0 : stream.trim(args.strategy, args.threshold, args.approx, args.limit);

  // ---- XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM ------------------------------------------------

  resp.command(
    'xadd',
    { arity: -5, flags: ['write', 'denyoom', 'fast'], keys: [1, 1, 1], summary: 'Appends a new message to a stream.', group },
    (client, argv) => {
      const args = parseAddOrTrim(argv, true);
      const fieldsAt = args.idIndex + 1;
      const fieldCount = argv.length - fieldsAt;
      if (fieldCount < 2 || fieldCount % 2 === 1) throw new RespError("ERR wrong number of arguments for 'xadd' command");
      if (args.id?.seqGiven && args.id.id === 0n) throw new RespError('ERR The ID specified in XADD must be greater than 0-0');
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      let stream = readStream(db, key);
      if (stream === undefined) {
        if (args.noMkStream) return null;
        stream = new Stream();
        db.set(key, { type: 'stream', data: stream });
      }
      if (stream.lastId === MAX_ID) throw new RespError('ERR The stream has exhausted the last possible ID, unable to add more items');
      const smaller = 'ERR The ID specified in XADD is equal or smaller than the target stream top item';
      let id: StreamId;
      const last = stream.lastId;
      if (args.id === undefined) {
        const now = BigInt(Date.now());
        id = now > msOf(last) ? makeId(now, 0n) : (nextId(last) as StreamId);
      } else if (!args.id.seqGiven) {
        if (msOf(last) === msOf(args.id.id)) {
          if (seqOf(last) === U64_MAX) throw new RespError(smaller);
          id = last + 1n;
        } else id = args.id.id;
      } else id = args.id.id;
      if (id <= last) throw new RespError(smaller);
      // A listpack holds at most 1 GB (STREAM_LISTPACK_MAX_SIZE): Redis refuses bigger entries.
      let total = 0;
      for (let i = fieldsAt; i < argv.length; i++) total += (argv[i] as Buffer).length;
      if (total > 2 ** 30) throw new RespError('ERR Elements are too large to be stored');
      stream.append(id, argv.slice(fieldsAt), node.maxEntries, node.maxBytes);
      written(client, key, 'xadd');
      if (trim(stream, args) > 0) written(client, key, 'xtrim');
      if (propagation.active) propagation.rewrite(replayedXadd(argv, args, id, stream));
      blocked.signal(client.db, key);
      return formatId(id);
    },
  );

  resp.command(
    'xlen',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Return the number of messages in a stream.', group },
    (client, argv) => readStream(keyspace.db(client.db), keyOf(argv[1]))?.length ?? 0,
  );

  for (const [name, rev] of [
    ['xrange', false],
    ['xrevrange', true],
  ] as const) {
    resp.command(
      name,
      { arity: -4, flags: ['readonly'], keys: [1, 1, 1], summary: 'Return a range of elements in a stream.', group },
      (client, argv) => {
        const start = rangeStart(argv[rev ? 3 : 2] as Buffer);
        const end = rangeEnd(argv[rev ? 2 : 3] as Buffer);
        let count = -1;
        for (let j = 4; j < argv.length; j++) {
          if (upper(argv[j]) === 'COUNT' && j + 1 < argv.length) {
            const value = int64Arg(argv[++j]);
            count = value < 0n ? 0 : Number(value);
          } else throw new RespError('ERR syntax error');
        }
        const stream = readStream(keyspace.db(client.db), keyOf(argv[1]));
        if (stream === undefined) return [];
        if (count === 0) {
          client.reply.nullArray();
          return;
        }
        return stream.range(start, end, Math.max(count, 0), rev).map(entryReply);
      },
    );
  }

  resp.command(
    'xdel',
    { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Removes the specified entries from the stream.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const stream = readStream(keyspace.db(client.db), key);
      if (stream === undefined) return 0;
      const ids = argv.slice(2).map((arg) => parseId(arg, 0n, true).id);
      let deleted = 0;
      for (const id of ids) if (stream.delete(id)) deleted++;
      if (deleted > 0) written(client, key, 'xdel');
      return deleted;
    },
  );

  resp.command(
    'xtrim',
    {
      arity: -4,
      flags: ['write'],
      keys: [1, 1, 1],
      summary: 'Trims the stream to (approximately if "~" is passed) a certain size.',
      group,
    },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const stream = readStream(keyspace.db(client.db), key);
      if (stream === undefined) return 0;
      const deleted = trim(stream, parseAddOrTrim(argv, false));
      if (deleted > 0) written(client, key, 'xtrim');
      return deleted;
    },
  );

  // ---- XREAD, XREADGROUP ------------------------------------------------------------------------

  type Served = { key: string; entries: Array<{ id: StreamId; fields: readonly Buffer[] | undefined }> };

  const writeServed = (client: RespClient, served: Served[]): void => {
    const reply = client.reply;
    if (client.protocol === 2) reply.array(served.length);
    else reply.map(served.length);
    for (const { key, entries } of served) {
      if (client.protocol === 2) reply.array(2);
      reply.bulk(bytesOf(key));
      reply.array(entries.length);
      for (const { id, fields } of entries) {
        reply.array(2);
        reply.bulk(formatId(id));
        if (fields === undefined) reply.nullArray();
        else {
          reply.array(fields.length);
          for (const field of fields) reply.bulk(field);
        }
      }
    }
  };

  /** Deliver entries after the group's last ID to a consumer (streamReplyWithRange with a group). */
  const deliverNew = (
    stream: Stream,
    cg: Group,
    consumer: Consumer,
    count: number,
    noack: boolean,
    replay: { key: string; group: string; emit: (argv: Array<Buffer | string>) => void },
  ): Served['entries'] => {
    const start = nextId(cg.lastId);
    if (start === undefined) return [];
    const entries = stream.range(start, MAX_ID, count);
    const now = Date.now();
    const before = cg.lastId;
    for (const { id } of entries) {
      if (id > cg.lastId) {
        if (cg.entriesRead !== -1 && !stream.rangeHasTombstones(id)) cg.entriesRead++;
        else if (stream.entriesAdded > 0) cg.entriesRead = stream.distanceFromFirstEverEntry(id);
        cg.lastId = id;
      }
      if (!noack) replay.emit(claimReplay(replay.key, replay.group, cg, id, consumer.name, cg.deliver(id, consumer, 1, now)));
    }
    // With NOACK nothing is pending: the group's new last ID replays as an XGROUP SETID.
    if (noack && cg.lastId !== before) {
      replay.emit([
        'XGROUP',
        'SETID',
        bytesOf(replay.key),
        bytesOf(replay.group),
        formatId(cg.lastId),
        'ENTRIESREAD',
        String(cg.entriesRead),
      ]);
    }
    return entries;
  };

  /** A consumer's own pending entries from `start` (XREADGROUP with an ID other than `>`). */
  const history = (stream: Stream, cg: Group, consumer: Consumer, start: StreamId, count: number): Served['entries'] => {
    const out: Served['entries'] = [];
    const now = Date.now();
    for (const id of cg.order.range(start, MAX_ID)) {
      if (count > 0 && out.length >= count) break;
      const nack = cg.pel.get(id);
      if (nack?.consumer !== consumer) continue;
      const entry = stream.get(id);
      if (entry === undefined) out.push({ id, fields: undefined });
      else {
        nack.deliveryTime = now;
        nack.deliveryCount++;
        out.push(entry);
      }
    }
    return out;
  };

  const lookupConsumer = (client: RespClient, key: string, cg: Group, name: string): Consumer => {
    const { consumer, created } = cg.consumer(name);
    consumer.seenTime = Date.now();
    if (created) resp.notifyKeyspaceEvent('stream', 'xgroup-createconsumer', key, client.db);
    return consumer;
  };

  for (const readgroup of [false, true]) {
    const name = readgroup ? 'xreadgroup' : 'xread';
    resp.command(
      name,
      {
        arity: readgroup ? -7 : -4,
        flags: readgroup ? ['write'] : ['readonly'],
        keysOf: (argv: readonly Buffer[]) => {
          const at = argv.findIndex((arg, i) => i > 0 && upper(arg) === 'STREAMS');
          if (at < 0) return [];
          const count = Math.floor((argv.length - at - 1) / 2);
          return argv.slice(at + 1, at + 1 + count) as Buffer[];
        },
        summary: readgroup
          ? 'Return new entries from a stream using a consumer group, or access the history of the pending entries for a given consumer.'
          : 'Return never seen elements in multiple streams, with IDs greater than the ones reported by the caller for each stream.',
        group,
      },
      (client, argv) => {
        let timeoutMs = -1;
        let count = 0;
        let streamsAt = 0;
        let groupName: string | undefined;
        let consumerName: string | undefined;
        let noack = false;
        for (let i = 1; i < argv.length; i++) {
          const more = argv.length - i - 1;
          const option = upper(argv[i]);
          if (option === 'BLOCK' && more > 0) {
            const ms = int64Arg(argv[++i], 'ERR timeout is not an integer or out of range');
            if (ms < 0n) throw new RespError('ERR timeout is negative');
            if (ms > 2n ** 63n - 1n - BigInt(Date.now())) throw new RespError('ERR timeout is out of range');
            timeoutMs = Number(ms);
          } else if (option === 'COUNT' && more > 0) {
            const value = int64Arg(argv[++i]);
            count = value < 0n ? 0 : Number(value);
          } else if (option === 'STREAMS' && more > 0) {
            streamsAt = i + 1;
            if ((argv.length - streamsAt) % 2 !== 0) {
              throw new RespError("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.");
            }
            break;
          } else if (option === 'GROUP' && more >= 2) {
            if (!readgroup) throw new RespError('ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.');
            groupName = text(argv[i + 1]);
            consumerName = text(argv[i + 2]);
            i += 2;
          } else if (option === 'NOACK') {
            if (!readgroup) throw new RespError('ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.');
            noack = true;
          } else throw new RespError('ERR syntax error');
        }
        if (streamsAt === 0) throw new RespError('ERR syntax error');
        // XREADGROUP replays as the XCLAIMs (and XGROUP SETID) of what it delivered, as in Redis.
        if (readgroup) propagation.prevent();
        if (readgroup && groupName === undefined) throw new RespError('ERR Missing GROUP option for XREADGROUP');
        const db = keyspace.db(client.db);
        const count2 = (argv.length - streamsAt) / 2;
        const keys = argv.slice(streamsAt, streamsAt + count2).map(keyOf);
        // After each key: the ID to read after (undefined: `>`), and its group.
        const after: Array<StreamId | undefined> = [];
        const groups: Group[] = [];
        keys.forEach((key, index) => {
          const stream = readStream(db, key);
          if (groupName !== undefined) {
            const cg = stream?.groups.get(groupName);
            if (cg === undefined) {
              throw new RespError(`NOGROUP No such key '${key}' or consumer group '${groupName}' in XREADGROUP with GROUP option`);
            }
            groups[index] = cg;
          }
          const raw = text(argv[streamsAt + count2 + index]);
          if (raw === '$') {
            if (readgroup) {
              throw new RespError(
                'ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.',
              );
            }
            after[index] = stream?.lastId ?? 0n;
          } else if (raw === '>') {
            if (!readgroup) {
              throw new RespError('ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.');
            }
            after[index] = undefined;
          } else after[index] = parseId(raw, 0n, true).id;
        });

        const served: Served[] = [];
        keys.forEach((key, index) => {
          const stream = db.peek(key);
          if (stream?.type !== 'stream') return;
          const cg = groups[index];
          const from = after[index];
          if (cg !== undefined) {
            const consumer = lookupConsumer(client, key, cg, consumerName as string);
            if (from !== undefined) {
              // Pending entries after the ID given (Redis reads from the next ID on).
              const start = nextId(from);
              served.push({ key, entries: start === undefined ? [] : history(stream.data, cg, consumer, start, count) });
              resp.touch(client.db, key);
            } else if (stream.data.length > 0 && (stream.data.edge(true)?.id ?? 0n) > cg.lastId) {
              const emit = (replayed: Array<Buffer | string>) => propagation.also(client.db, replayed);
              served.push({ key, entries: deliverNew(stream.data, cg, consumer, count, noack, { key, group: groupName as string, emit }) });
              resp.touch(client.db, key);
            }
          } else if (stream.data.length > 0 && (stream.data.edge(true)?.id ?? 0n) > (from as StreamId)) {
            const start = nextId(from as StreamId);
            if (start !== undefined) served.push({ key, entries: stream.data.range(start, MAX_ID, count) });
          }
        });
        if (served.length > 0) {
          writeServed(client, served);
          return;
        }
        if (timeoutMs === -1 || !blocked.mayBlock(client)) {
          client.reply.nullArray();
          return;
        }
        const blockedCount = count || 1000;
        const take = (key: string): Served | { error: string } | undefined => {
          const index = keys.indexOf(key);
          const value = keyspace.db(client.db).peek(key);
          // A group reader whose key went (DEL, SET, FLUSHALL…) or whose group went gets an error, as in Redis.
          if (index < 0) return undefined;
          if (value?.type !== 'stream') return readgroup ? { error: 'UNBLOCKED the stream key no longer exists' } : undefined;
          const stream = value.data;
          if (readgroup) {
            // Looked up by name: a RENAME may have brought another stream with a group of that name.
            const cg = stream.groups.get(groupName as string);
            if (cg === undefined) return { error: 'NOGROUP the consumer group this client was blocked on no longer exists' };
            if (stream.length === 0 || (stream.edge(true)?.id ?? 0n) <= cg.lastId) return undefined;
            const consumer = lookupConsumer(client, key, cg, consumerName as string);
            const emit = (replayed: Array<Buffer | string>) => propagation.served(client.db, replayed);
            return { key, entries: deliverNew(stream, cg, consumer, blockedCount, noack, { key, group: groupName as string, emit }) };
          }
          const start = nextId(after[index] as StreamId);
          if (start === undefined) return undefined;
          const entries = stream.range(start, MAX_ID, blockedCount);
          return entries.length > 0 ? { key, entries } : undefined;
        };
        for (const key of keys) watchKey(client.db, key, 1);
        return blocked.waitFor(client, keys, take, timeoutMs).then((result) => {
          for (const key of keys) watchKey(client.db, key, -1);
          if (result === undefined) return;
          if ('error' in result) throw new RespError(result.error);
          writeServed(client, [result]);
        });
      },
    );
  }

  // ---- XGROUP, XSETID -----------------------------------------------------------------------------

  const noGroup = (groupName: string, key: string) => new RespError(`NOGROUP No such consumer group '${groupName}' for key name '${key}'`);
  const xgroupArity: Record<string, number> = { CREATE: -5, SETID: -5, DESTROY: 4, CREATECONSUMER: 5, DELCONSUMER: 5, HELP: 2 };
  resp.command(
    'xgroup',
    {
      arity: -2,
      summary: 'A container for consumer groups commands.',
      group,
      // As Redis 7.0.15 declares them (COMMAND INFO): each has its key at index 2, which COMMAND
      // GETKEYS, tracking and cluster slots find through the subcommand.
      subcommands: {
        help: { arity: 2, flags: ['loading', 'stale'] },
        create: { arity: -5, flags: ['write', 'denyoom'], keySpecs: [{ flags: ['RW', 'insert'], begin: 2 }] },
        delconsumer: { arity: 5, flags: ['write'], keySpecs: [{ flags: ['RW', 'delete'], begin: 2 }] },
        destroy: { arity: 4, flags: ['write'], keySpecs: [{ flags: ['RW', 'delete'], begin: 2 }] },
        createconsumer: { arity: 5, flags: ['write', 'denyoom'], keySpecs: [{ flags: ['RW', 'insert'], begin: 2 }] },
        setid: { arity: -5, flags: ['write'], keySpecs: [{ flags: ['RW', 'update'], begin: 2 }] },
      },
    },
    (client, argv) => {
      const sub = upper(argv[1]);
      const arity = xgroupArity[sub];
      if (arity === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try XGROUP HELP.`);
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity) {
        throw new RespError(`ERR wrong number of arguments for 'xgroup|${sub.toLowerCase()}' command`);
      }
      const syntax = new RespError(`ERR unknown subcommand or wrong number of arguments for '${text(argv[1])}'. Try XGROUP HELP.`);
      if (sub === 'HELP') {
        return helpReply('XGROUP', [
          'CREATE <key> <groupname> <id|$> [option]',
          '    Create a new consumer group. Options are:',
          '    * MKSTREAM',
          '      Create the empty stream if it does not exist.',
          '    * ENTRIESREAD entries_read',
          "      Set the group's entries_read counter (internal use).",
          'CREATECONSUMER <key> <groupname> <consumer>',
          '    Create a new consumer in the specified group.',
          'DELCONSUMER <key> <groupname> <consumer>',
          '    Remove the specified consumer.',
          'DESTROY <key> <groupname>',
          '    Remove the specified group.',
          'SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]',
          '    Set the current group ID and entries_read counter.',
        ]);
      }
      let mkstream = false;
      let entriesRead = -1;
      for (let i = 5; i < argv.length; ) {
        const option = upper(argv[i]);
        if (sub === 'CREATE' && option === 'MKSTREAM') {
          mkstream = true;
          i++;
        } else if ((sub === 'CREATE' || sub === 'SETID') && option === 'ENTRIESREAD' && i + 1 < argv.length) {
          const value = int64Arg(argv[i + 1]);
          if (value < 0n && value !== -1n) throw new RespError('ERR value for ENTRIESREAD must be positive or -1');
          entriesRead = Number(value);
          i += 2;
        } else throw syntax;
      }
      const key = keyOf(argv[2]);
      const groupName = text(argv[3]);
      const db = keyspace.db(client.db);
      let stream = readStream(db, key);
      if (!mkstream && stream === undefined) {
        throw new RespError(
          'ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.',
        );
      }
      const cg = stream?.groups.get(groupName);
      if (stream !== undefined && cg === undefined && sub !== 'CREATE' && sub !== 'DESTROY') throw noGroup(groupName, key);
      switch (sub) {
        case 'CREATE': {
          if (argv.length > 8) throw syntax;
          const raw = text(argv[4]);
          const id = raw === '$' ? (stream?.lastId ?? 0n) : parseId(raw, 0n, true).id;
          if (stream === undefined) {
            stream = new Stream();
            db.set(key, { type: 'stream', data: stream });
            resp.touch(client.db, key);
          }
          if (stream.groups.has(groupName)) throw new RespError('BUSYGROUP Consumer Group name already exists');
          stream.groups.set(groupName, new Group(id, entriesRead));
          written(client, key, 'xgroup-create');
          return OK;
        }
        case 'SETID': {
          if (argv.length !== 5 && argv.length !== 7) throw syntax;
          const raw = text(argv[4]);
          const s = stream as Stream;
          const id = raw === '$' ? s.lastId : parseId(raw, 0n, false).id;
          const g = cg as Group;
          g.lastId = id;
          g.entriesRead = entriesRead;
          written(client, key, 'xgroup-setid');
          return OK;
        }
        case 'DESTROY': {
          if (cg === undefined) return 0;
          (stream as Stream).groups.delete(groupName);
          written(client, key, 'xgroup-destroy');
          blocked.signal(client.db, key);
          return 1;
        }
        case 'CREATECONSUMER': {
          const { created } = (cg as Group).consumer(text(argv[4]));
          if (created) written(client, key, 'xgroup-createconsumer');
          return created ? 1 : 0;
        }
        default: {
          const g = cg as Group;
          const consumerName = text(argv[4]);
          if (!g.consumers.has(consumerName)) return 0;
          const pending = g.deleteConsumer(consumerName);
          written(client, key, 'xgroup-delconsumer');
          return pending;
        }
      }
    },
  );

  resp.command(
    'xsetid',
    {
      arity: -3,
      flags: ['write', 'denyoom', 'fast'],
      keys: [1, 1, 1],
      summary: 'An internal command for replicating stream values.',
      group,
    },
    (client, argv) => {
      const id = parseId(argv[2] as Buffer, 0n, true).id;
      let entriesAdded = -1n;
      let maxDeleted = 0n;
      for (let i = 3; i < argv.length; i += 2) {
        const option = upper(argv[i]);
        if (option === 'ENTRIESADDED' && i + 1 < argv.length) {
          entriesAdded = int64Arg(argv[i + 1]);
          if (entriesAdded < 0n) throw new RespError('ERR entries_added must be positive');
        } else if (option === 'MAXDELETEDID' && i + 1 < argv.length) {
          maxDeleted = parseId(argv[i + 1] as Buffer, 0n, true).id;
          if (id < maxDeleted) throw new RespError('ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id');
        } else throw new RespError('ERR syntax error');
      }
      const key = keyOf(argv[1]);
      const stream = readStream(keyspace.db(client.db), key);
      if (stream === undefined) throw new RespError('ERR no such key');
      if (stream.length > 0) {
        if (id < (stream.edge(true)?.id ?? 0n)) {
          throw new RespError('ERR The ID specified in XSETID is smaller than the target stream top item');
        }
        if (entriesAdded !== -1n && BigInt(stream.length) > entriesAdded) {
          throw new RespError('ERR The entries_added specified in XSETID is smaller than the target stream length');
        }
      }
      stream.lastId = id;
      if (entriesAdded !== -1n) stream.entriesAdded = Number(entriesAdded);
      if (maxDeleted !== 0n) stream.maxDeletedId = maxDeleted;
      written(client, key, 'xsetid');
      return OK;
    },
  );

  // ---- XACK, XPENDING, XCLAIM, XAUTOCLAIM -----------------------------------------------------------

  /** The stream and group a command names; undefined when either is missing. */
  const lookupGroup = (client: RespClient, argv: Buffer[]): { stream: Stream; cg: Group } | undefined => {
    const stream = readStream(keyspace.db(client.db), keyOf(argv[1]));
    const cg = stream?.groups.get(text(argv[2]));
    return stream !== undefined && cg !== undefined ? { stream, cg } : undefined;
  };
  const noKeyOrGroup = (argv: Buffer[]) => new RespError(`NOGROUP No such key '${text(argv[1])}' or consumer group '${text(argv[2])}'`);

  resp.command(
    'xack',
    {
      arity: -4,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary:
        'Marks a pending message as correctly processed, effectively removing it from the pending entries list of the consumer group.',
      group,
    },
    (client, argv) => {
      const found = lookupGroup(client, argv);
      if (found === undefined) return 0;
      const ids = argv.slice(3).map((arg) => parseId(arg, 0n, true).id);
      let acknowledged = 0;
      for (const id of ids) if (found.cg.ack(id)) acknowledged++;
      if (acknowledged > 0) resp.touch(client.db, keyOf(argv[1]));
      return acknowledged;
    },
  );

  resp.command(
    'xpending',
    {
      arity: -3,
      flags: ['readonly'],
      keys: [1, 1, 1],
      summary:
        'Return information and entries from a stream consumer group pending entries list, that are messages fetched but never acknowledged.',
      group,
    },
    (client, argv) => {
      if (argv.length !== 3 && (argv.length < 6 || argv.length > 9)) throw new RespError('ERR syntax error');
      let start = 0n;
      let end = MAX_ID;
      let count = 0;
      let minIdle = 0n;
      let consumerName: string | undefined;
      if (argv.length >= 6) {
        let at = 3;
        if (upper(argv[3]) === 'IDLE') {
          minIdle = int64Arg(argv[4]);
          if (argv.length < 8) throw new RespError('ERR syntax error');
          at += 2;
        }
        const value = int64Arg(argv[at + 2]);
        count = value < 0n ? 0 : Number(value);
        start = rangeStart(argv[at] as Buffer);
        end = rangeEnd(argv[at + 1] as Buffer);
        if (at + 3 < argv.length) consumerName = text(argv[at + 3]);
      }
      const found = lookupGroup(client, argv);
      if (found === undefined) throw noKeyOrGroup(argv);
      const { cg } = found;
      if (argv.length === 3) {
        if (cg.pel.size === 0) {
          const reply = client.reply;
          reply.array(4).integer(0).null().null().nullArray();
          return;
        }
        const owners = byName(cg.consumers)
          .filter(([, consumer]) => consumer.pending.size > 0)
          .map(([name, consumer]) => [bytesOf(name), String(consumer.pending.size)]);
        return [cg.pel.size, formatId(cg.order.first() as StreamId), formatId(cg.order.last() as StreamId), owners];
      }
      const consumer = consumerName === undefined ? undefined : cg.consumers.get(consumerName);
      if (consumerName !== undefined && consumer === undefined) return [];
      const now = Date.now();
      const out: ReplyValue[] = [];
      for (const id of cg.order.range(start, end)) {
        if (out.length >= count) break;
        const nack = cg.pel.get(id);
        if (nack === undefined || (consumer !== undefined && nack.consumer !== consumer)) continue;
        if (minIdle > 0n && BigInt(now - nack.deliveryTime) < minIdle) continue;
        out.push([formatId(id), bytesOf(nack.consumer.name), Math.max(now - nack.deliveryTime, 0), nack.deliveryCount]);
      }
      return out;
    },
  );

  resp.command(
    'xclaim',
    {
      arity: -6,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary:
        'Changes (or acquires) ownership of a message in a consumer group, as if the message was delivered to the specified consumer.',
      group,
    },
    (client, argv) => {
      const found = lookupGroup(client, argv);
      if (found === undefined) throw noKeyOrGroup(argv);
      const { stream, cg } = found;
      let minIdle = int64Arg(argv[4], 'ERR Invalid min-idle-time argument for XCLAIM');
      if (minIdle < 0n) minIdle = 0n;
      const ids: StreamId[] = [];
      let j = 5;
      for (; j < argv.length; j++) {
        try {
          ids.push(parseId(argv[j] as Buffer, 0n, true).id);
        } catch {
          break;
        }
      }
      const now = Date.now();
      let deliveryTime = -1;
      let retryCount = -1;
      let force = false;
      let justId = false;
      let lastId = 0n;
      for (; j < argv.length; j++) {
        const more = argv.length - 1 - j;
        const option = upper(argv[j]);
        if (option === 'FORCE') force = true;
        else if (option === 'JUSTID') justId = true;
        else if (option === 'IDLE' && more > 0) {
          deliveryTime = now - Number(int64Arg(argv[++j], 'ERR Invalid IDLE option argument for XCLAIM'));
        } else if (option === 'TIME' && more > 0) {
          deliveryTime = Number(int64Arg(argv[++j], 'ERR Invalid TIME option argument for XCLAIM'));
        } else if (option === 'RETRYCOUNT' && more > 0) {
          retryCount = Number(int64Arg(argv[++j], 'ERR Invalid RETRYCOUNT option argument for XCLAIM'));
        } else if (option === 'LASTID' && more > 0) {
          lastId = parseId(argv[++j] as Buffer, 0n, true).id;
        } else throw new RespError(`ERR Unrecognized XCLAIM option '${text(argv[j])}'`);
      }
      if (lastId > cg.lastId) cg.lastId = lastId;
      propagation.prevent(); // replays as the XCLAIM … FORCE JUSTID of each claimed entry
      if (deliveryTime === -1 || deliveryTime < 0 || deliveryTime > now) deliveryTime = now;
      const key = keyOf(argv[1]);
      let consumer: Consumer | undefined;
      const out: ReplyValue[] = [];
      for (const id of ids) {
        const entry = stream.get(id);
        let nack = cg.pel.get(id);
        if (entry === undefined) {
          if (nack !== undefined) cg.ack(id);
          continue;
        }
        if (nack === undefined && !force) continue;
        if (nack !== undefined && minIdle > 0n && BigInt(now - nack.deliveryTime) < minIdle) continue;
        consumer ??= lookupConsumer(client, key, cg, text(argv[3]));
        const count = nack === undefined ? 0 : nack.deliveryCount;
        nack = cg.deliver(id, consumer, count, deliveryTime);
        if (retryCount >= 0) nack.deliveryCount = retryCount;
        else if (!justId) nack.deliveryCount++;
        propagation.also(client.db, claimReplay(key, text(argv[2]), cg, id, consumer.name, nack));
        out.push(justId ? formatId(id) : entryReply(entry));
      }
      resp.touch(client.db, key);
      return out;
    },
  );

  resp.command(
    'xautoclaim',
    {
      arity: -6,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary:
        'Changes (or acquires) ownership of messages in a consumer group, as if the messages were delivered to the specified consumer.',
      group,
    },
    (client, argv) => {
      let minIdle = int64Arg(argv[4], 'ERR Invalid min-idle-time argument for XAUTOCLAIM');
      if (minIdle < 0n) minIdle = 0n;
      const start = rangeStart(argv[5] as Buffer);
      let count = 100;
      let justId = false;
      for (let j = 6; j < argv.length; j++) {
        const option = upper(argv[j]);
        if (option === 'COUNT' && j + 1 < argv.length) {
          const value = int64Arg(argv[++j], 'ERR COUNT must be > 0');
          // t_stream.c: LONG_MAX / max(sizeof(streamID), attempts_factor), i.e. LONG_MAX / 16.
          if (value < 1n || value > (2n ** 63n - 1n) / 16n) throw new RespError('ERR COUNT must be > 0');
          count = Number(value);
        } else if (option === 'JUSTID') justId = true;
        else throw new RespError('ERR syntax error');
      }
      const found = lookupGroup(client, argv);
      if (found === undefined) throw noKeyOrGroup(argv);
      const { stream, cg } = found;
      const key = keyOf(argv[1]);
      const now = Date.now();
      let attempts = count * 10;
      let consumer: Consumer | undefined;
      const claimed: ReplyValue[] = [];
      const deleted: string[] = [];
      propagation.prevent(); // replays as the XCLAIM … FORCE JUSTID of each claimed entry
      const pending = [...cg.order.range(start, MAX_ID)];
      let index = 0;
      for (; attempts > 0 && count > 0 && index < pending.length; index++) {
        attempts--;
        const id = pending[index] as StreamId;
        const nack = cg.pel.get(id);
        if (nack === undefined) continue;
        const entry = stream.get(id);
        if (entry === undefined) {
          cg.ack(id);
          deleted.push(formatId(id));
          count--;
          continue;
        }
        if (minIdle > 0n && BigInt(now - nack.deliveryTime) < minIdle) continue;
        consumer ??= lookupConsumer(client, key, cg, text(argv[3]));
        const claimedNack = cg.deliver(id, consumer, nack.deliveryCount, now);
        if (!justId) claimedNack.deliveryCount++;
        propagation.also(client.db, claimReplay(key, text(argv[2]), cg, id, consumer.name, claimedNack));
        claimed.push(justId ? formatId(id) : entryReply(entry));
        count--;
      }
      const next = pending[index];
      resp.touch(client.db, key);
      return [next === undefined ? '0-0' : formatId(next), claimed, deleted];
    },
  );

  // ---- XINFO ------------------------------------------------------------------------------------------

  resp.command(
    'xinfo',
    {
      arity: -2,
      summary: 'A container for stream introspection commands.',
      group,
      // As Redis 7.0.15 declares them (COMMAND INFO).
      subcommands: {
        help: { arity: 2, flags: ['loading', 'stale'] },
        consumers: {
          arity: 4,
          flags: ['readonly'],
          keySpecs: [{ flags: ['RO', 'access'], begin: 2 }],
          tips: ['nondeterministic_output'],
        },
        stream: { arity: -3, flags: ['readonly'], keySpecs: [{ flags: ['RO', 'access'], begin: 2 }] },
        groups: { arity: 3, flags: ['readonly'], keySpecs: [{ flags: ['RO', 'access'], begin: 2 }] },
      },
    },
    (client, argv) => {
      const sub = upper(argv[1]);
      const arities: Record<string, number> = { CONSUMERS: 4, GROUPS: 3, STREAM: -3, HELP: 2 };
      const arity = arities[sub];
      if (arity === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try XINFO HELP.`);
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity) {
        throw new RespError(`ERR wrong number of arguments for 'xinfo|${sub.toLowerCase()}' command`);
      }
      const syntax = new RespError(`ERR unknown subcommand or wrong number of arguments for '${text(argv[1])}'. Try XINFO HELP.`);
      if (sub === 'HELP') {
        return helpReply('XINFO', [
          'CONSUMERS <key> <groupname>',
          '    Show consumers of <groupname>.',
          'GROUPS <key>',
          '    Show the stream consumer groups.',
          'STREAM <key> [FULL [COUNT <count>]',
          '    Show information about the stream.',
        ]);
      }
      const key = keyOf(argv[2]);
      const stream = readStream(keyspace.db(client.db), key);
      if (stream === undefined) throw new RespError('ERR no such key');
      const now = Date.now();
      if (sub === 'CONSUMERS') {
        const cg = stream.groups.get(text(argv[3]));
        if (cg === undefined) throw noGroup(text(argv[3]), key);
        return byName(cg.consumers).map(
          ([name, consumer]) =>
            new Map<ReplyValue, ReplyValue>([
              ['name', bytesOf(name)],
              ['pending', consumer.pending.size],
              ['idle', Math.max(now - consumer.seenTime, 0)],
            ]),
        );
      }
      const groupInfo = (name: string, cg: Group): Array<[ReplyValue, ReplyValue]> => [
        ['name', bytesOf(name)],
        ['last-delivered-id', formatId(cg.lastId)],
        ['entries-read', cg.entriesRead === -1 ? null : cg.entriesRead],
        ['lag', stream.lag(cg)],
      ];
      if (sub === 'GROUPS') {
        return byName(stream.groups).map(([name, cg]) => {
          const [first, ...rest] = groupInfo(name, cg);
          return new Map<ReplyValue, ReplyValue>([
            first as [ReplyValue, ReplyValue],
            ['consumers', cg.consumers.size],
            ['pending', cg.pel.size],
            ...rest,
          ]);
        });
      }
      // STREAM [FULL [COUNT n]]
      const options = argv.slice(3);
      let full = false;
      let count = 10;
      if (options.length > 0) {
        if ((options.length !== 1 && options.length !== 3) || upper(options[0]) !== 'FULL') throw syntax;
        full = true;
        if (options.length === 3) {
          if (upper(options[1]) !== 'COUNT') throw syntax;
          const value = int64Arg(options[2]);
          count = value < 0n ? 10 : Number(value);
        }
      }
      const info: Array<[ReplyValue, ReplyValue]> = [
        ['length', stream.length],
        ['radix-tree-keys', stream.nodeCount],
        ['radix-tree-nodes', stream.nodeCount === 0 ? 1 : stream.nodeCount + 1],
        ['last-generated-id', formatId(stream.lastId)],
        ['max-deleted-entry-id', formatId(stream.maxDeletedId)],
        ['entries-added', stream.entriesAdded],
        ['recorded-first-entry-id', formatId(stream.firstId)],
      ];
      if (!full) {
        const first = stream.edge(false);
        const last = stream.edge(true);
        info.push(
          ['groups', stream.groups.size],
          ['first-entry', first === undefined ? null : entryReply(first)],
          ['last-entry', last === undefined ? null : entryReply(last)],
        );
        return new Map(info);
      }
      info.push(['entries', stream.range(0n, MAX_ID, count).map(entryReply)]);
      const limited = <T>(items: Iterable<T>): T[] => {
        const out: T[] = [];
        for (const item of items) {
          if (count > 0 && out.length >= count) break;
          out.push(item);
        }
        return out;
      };
      info.push([
        'groups',
        byName(stream.groups).map(([name, cg]) => {
          const [first, ...rest] = groupInfo(name, cg);
          return new Map<ReplyValue, ReplyValue>([
            first as [ReplyValue, ReplyValue],
            ...rest,
            ['pel-count', cg.pel.size],
            [
              'pending',
              limited(cg.order.range(0n, MAX_ID)).map((id) => {
                const nack = cg.pel.get(id);
                return [formatId(id), bytesOf(nack?.consumer.name ?? ''), nack?.deliveryTime ?? 0, nack?.deliveryCount ?? 0];
              }),
            ],
            [
              'consumers',
              byName(cg.consumers).map(
                ([consumerName, consumer]) =>
                  new Map<ReplyValue, ReplyValue>([
                    ['name', bytesOf(consumerName)],
                    ['seen-time', consumer.seenTime],
                    ['pel-count', consumer.pending.size],
                    [
                      'pending',
                      limited([...cg.order.range(0n, MAX_ID)].filter((id) => consumer.pending.has(id))).map((id) => {
                        const nack = cg.pel.get(id);
                        return [formatId(id), nack?.deliveryTime ?? 0, nack?.deliveryCount ?? 0];
                      }),
                    ],
                  ]),
              ),
            ],
          ]);
        }),
      ]);
      return new Map(info);
    },
  );
}
