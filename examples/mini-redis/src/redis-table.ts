import type { AclCategory, CommandFlag, CommandOptions, KeySpec } from '@portbind/resp';

// What Redis 7.0.15's command table (src/commands/*.json) says of mini-redis's commands that
// only COMMAND INFO shows: flags that do not change how mini-redis runs the command (noscript,
// loading, stale, blocking…) and the tips cluster proxies read. Applied once, at registration
// (app.ts), so that each command file declares what its commands do and this file what Redis
// prints of them.

/** Flags Redis gives these commands besides those their files declare. */
const EXTRA_FLAGS: Readonly<Record<string, readonly CommandFlag[]>> = {
  append: ['fast'],
  unlink: ['fast'],
  renamenx: ['fast'],
  blpop: ['noscript', 'blocking'],
  brpop: ['noscript', 'blocking'],
  blmove: ['noscript', 'blocking'],
  brpoplpush: ['noscript', 'blocking'],
  bzpopmin: ['noscript'],
  bzpopmax: ['noscript'],
  xread: ['blocking'],
  xreadgroup: ['blocking'],
  time: ['loading', 'stale'],
  lastsave: ['loading', 'stale'],
  save: ['no_multi', 'noscript', 'no_async_loading'],
  bgsave: ['noscript', 'no_async_loading'],
  bgrewriteaof: ['noscript', 'no_async_loading'],
  shutdown: ['no_multi', 'noscript', 'loading', 'stale', 'allow_busy'],
  sync: ['no_multi', 'noscript', 'no_async_loading'],
  psync: ['no_multi', 'noscript', 'no_async_loading'],
  replconf: ['noscript', 'loading', 'stale', 'allow_busy'],
  wait: ['noscript'],
  replicaof: ['noscript', 'stale', 'no_async_loading'],
  slaveof: ['noscript', 'stale', 'no_async_loading'],
  role: ['noscript', 'loading', 'stale'],
};

const ALL_SHARDS_SUCCEEDED = ['request_policy:all_shards', 'response_policy:all_succeeded'];
const MULTI_SHARD_SUM = ['request_policy:multi_shard', 'response_policy:agg_sum'];

/** COMMAND INFO's tips, as Redis's. */
const TIPS: Readonly<Record<string, readonly string[]>> = {
  mset: ['request_policy:multi_shard', 'response_policy:all_succeeded'],
  mget: ['request_policy:multi_shard'],
  msetnx: ['request_policy:multi_shard', 'response_policy:agg_min'],
  del: MULTI_SHARD_SUM,
  unlink: MULTI_SHARD_SUM,
  exists: MULTI_SHARD_SUM,
  touch: MULTI_SHARD_SUM,
  ttl: ['nondeterministic_output'],
  pttl: ['nondeterministic_output'],
  randomkey: ['request_policy:all_shards', 'nondeterministic_output'],
  keys: ['request_policy:all_shards', 'nondeterministic_output_order'],
  scan: ['nondeterministic_output', 'request_policy:special'],
  hgetall: ['nondeterministic_output_order'],
  hkeys: ['nondeterministic_output_order'],
  hvals: ['nondeterministic_output_order'],
  hrandfield: ['nondeterministic_output'],
  hscan: ['nondeterministic_output'],
  smembers: ['nondeterministic_output_order'],
  srandmember: ['nondeterministic_output'],
  spop: ['nondeterministic_output'],
  sscan: ['nondeterministic_output'],
  sinter: ['nondeterministic_output_order'],
  sunion: ['nondeterministic_output_order'],
  sdiff: ['nondeterministic_output_order'],
  zrandmember: ['nondeterministic_output'],
  zscan: ['nondeterministic_output'],
  flushdb: ALL_SHARDS_SUCCEEDED,
  flushall: ALL_SHARDS_SUCCEEDED,
  dbsize: ['request_policy:all_shards', 'response_policy:agg_sum'],
  time: ['nondeterministic_output'],
  lastsave: ['nondeterministic_output'],
  dump: ['nondeterministic_output'],
  wait: ['request_policy:all_shards', 'response_policy:agg_min'],
  info: ['nondeterministic_output', 'request_policy:all_shards', 'response_policy:special'],
  xadd: ['nondeterministic_output'],
  xtrim: ['nondeterministic_output'],
  xpending: ['nondeterministic_output'],
  xclaim: ['nondeterministic_output'],
  xautoclaim: ['nondeterministic_output'],
};

const KEYSPACE_DANGEROUS: readonly AclCategory[] = ['keyspace', 'dangerous'];
const ADMIN_DANGEROUS: readonly AclCategory[] = ['admin', 'dangerous'];

/** ACL categories Redis declares (acl_categories) where the group's would be wrong. */
const CATEGORIES: Readonly<Record<string, readonly AclCategory[]>> = {
  getbit: ['bitmap'],
  setbit: ['bitmap'],
  keys: KEYSPACE_DANGEROUS,
  swapdb: KEYSPACE_DANGEROUS,
  flushdb: KEYSPACE_DANGEROUS,
  flushall: KEYSPACE_DANGEROUS,
  dbsize: ['keyspace'],
  lastsave: ADMIN_DANGEROUS,
  role: ADMIN_DANGEROUS,
  wait: ['connection'],
  info: ['dangerous'],
  restore: KEYSPACE_DANGEROUS,
};

/** `names`, space-separated, each with the same key specs. */
const each = (names: string, specs: readonly KeySpec[]): Record<string, readonly KeySpec[]> =>
  Object.fromEntries(names.split(' ').map((name) => [name, specs]));

/**
 * Key specs as Redis declares them where the flags a command's `keys` range gives (RW access
 * update, or RO access for a read) are not Redis's: what COMMAND INFO and COMMAND GETKEYSANDFLAGS
 * show. They find the same keys as the files' `keys` (which stay: dispatch's fast path).
 */
const KEY_SPECS: Readonly<Record<string, readonly KeySpec[]>> = {
  ...each('setrange expire pexpire expireat pexpireat persist lset hset hmset zadd geoadd xsetid xack xclaim', [
    { flags: ['RW', 'update'], begin: 1 },
  ]),
  ...each('lrem ltrim hdel srem zrem zremrangebyrank zremrangebyscore zremrangebylex xdel xtrim xautoclaim', [
    { flags: ['RW', 'delete'], begin: 1 },
  ]),
  ...each('strlen type llen hlen hexists hstrlen sismember scard zcard xlen', [{ flags: ['RO'], begin: 1 }]),
  ...each('append lpush rpush lpushx rpushx linsert hsetnx sadd', [{ flags: ['RW', 'insert'], begin: 1 }]),
  ...each('getdel lpop rpop spop zpopmin zpopmax', [{ flags: ['RW', 'access', 'delete'], begin: 1 }]),
  ...each('lmove rpoplpush blmove brpoplpush smove', [
    { flags: ['RW', 'access', 'delete'], begin: 1 },
    { flags: ['RW', 'insert'], begin: 2 },
  ]),
  ...each('setex psetex restore', [{ flags: ['OW', 'update'], begin: 1 }]),
  ...each('del unlink', [{ flags: ['RM', 'delete'], begin: 1, find: { lastKey: -1 } }]),
  ...each('exists touch', [{ flags: ['RO'], begin: 1, find: { lastKey: -1 } }]),
  ...each('blpop brpop', [{ flags: ['RW', 'access', 'delete'], begin: 1, find: { lastKey: -2 } }]),
  ...each('sunionstore sdiffstore', [
    { flags: ['OW', 'update'], begin: 1 },
    { flags: ['RO', 'access'], begin: 2, find: { lastKey: -1 } },
  ]),
  set: [{ notes: 'RW and ACCESS due to the optional `GET` argument', flags: ['RW', 'access', 'update', 'variable_flags'], begin: 1 }],
  setnx: [{ flags: ['OW', 'insert'], begin: 1 }],
  mset: [{ flags: ['OW', 'update'], begin: 1, find: { lastKey: -1, step: 2 } }],
  getex: [{ notes: 'RW and UPDATE because it changes the TTL', flags: ['RW', 'access', 'update'], begin: 1 }],
  msetnx: [{ flags: ['OW', 'insert'], begin: 1, find: { lastKey: -1, step: 2 } }],
  rename: [
    { flags: ['RW', 'access', 'delete'], begin: 1 },
    { flags: ['OW', 'update'], begin: 2 },
  ],
  renamenx: [
    { flags: ['RW', 'access', 'delete'], begin: 1 },
    { flags: ['OW', 'insert'], begin: 2 },
  ],
  copy: [
    { flags: ['RO', 'access'], begin: 1 },
    { flags: ['OW', 'update'], begin: 2 },
  ],
  sinterstore: [
    { flags: ['RW', 'update'], begin: 1 },
    { flags: ['RO', 'access'], begin: 2, find: { lastKey: -1 } },
  ],
  sintercard: [{ flags: ['RO', 'access'], begin: 1, find: { keynumIndex: 0, firstKey: 1 } }],
  xadd: [{ notes: 'UPDATE instead of INSERT because of the optional trimming feature', flags: ['RW', 'update'], begin: 1 }],
  xread: [{ flags: ['RO', 'access'], begin: { keyword: 'STREAMS', startFrom: 1 }, find: { lastKey: -1, limit: 2 } }],
  xreadgroup: [{ flags: ['RO', 'access'], begin: { keyword: 'STREAMS', startFrom: 4 }, find: { lastKey: -1, limit: 2 } }],
  pfadd: [{ flags: ['RW', 'insert'], begin: 1 }],
  pfcount: [
    {
      notes: 'RW because it may change the internal representation of the key, and propagate to replicas',
      flags: ['RW', 'access'],
      begin: 1,
      find: { lastKey: -1 },
    },
  ],
  pfmerge: [
    { flags: ['RW', 'access', 'insert'], begin: 1 },
    { flags: ['RO', 'access'], begin: 2, find: { lastKey: -1 } },
  ],
  pfdebug: [{ flags: ['RW', 'access'], begin: 2 }],
  bitop: [
    { flags: ['OW', 'update'], begin: 2 },
    { flags: ['RO', 'access'], begin: 3, find: { lastKey: -1 } },
  ],
  bitfield: [
    {
      notes: 'This command allows both access and modification of the key',
      flags: ['RW', 'access', 'update', 'variable_flags'],
      begin: 1,
    },
  ],
};

/** Redis 7.0's commands flagged CMD_DENYOOM, of those mini-redis has. */
const DENYOOM = new Set(
  (
    'setbit copy hincrby hincrbyfloat hmset hset hsetnx blmove brpoplpush linsert lmove lpush lpushx lset rpoplpush rpush rpushx ' +
    'sort sadd sdiffstore sinterstore sunionstore zadd zdiffstore zincrby zinterstore zrangestore zunionstore append decr decrby getset ' +
    'incr incrby incrbyfloat mset msetnx psetex set setex setnx setrange pfadd pfmerge pfdebug bitop bitfield ' +
    'geoadd georadius georadiusbymember geosearchstore'
  ).split(' '),
);

/** A command's options with Redis's denyoom flag, its COMMAND INFO-only flags, tips, ACL categories and key specs. */
export function asRedisDeclares(name: string, options: CommandOptions): CommandOptions {
  const extra = [...(DENYOOM.has(name) ? (['denyoom'] as const) : []), ...(EXTRA_FLAGS[name] ?? [])];
  const tips = options.tips === undefined ? TIPS[name] : undefined;
  const aclCategories = options.aclCategories === undefined ? CATEGORIES[name] : undefined;
  const keySpecs = options.keySpecs === undefined ? KEY_SPECS[name] : undefined;
  if (extra.length === 0 && tips === undefined && aclCategories === undefined && keySpecs === undefined) return options;
  const flags = [...(options.flags ?? [])];
  for (const flag of extra) if (!flags.includes(flag)) flags.push(flag);
  return {
    ...options,
    flags,
    ...(tips === undefined ? {} : { tips }),
    ...(aclCategories === undefined ? {} : { aclCategories }),
    ...(keySpecs === undefined ? {} : { keySpecs }),
  };
}
