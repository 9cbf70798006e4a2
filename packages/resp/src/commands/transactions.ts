import type { BuiltinHost } from '../host.js';
import { OK, RespError } from '../reply.js';

// MULTI, EXEC, DISCARD, WATCH and UNWATCH (multi.c). Dispatch queues the commands between MULTI
// and EXEC (those not flagged `nomulti`); EXEC runs them through the host's run().

type Host<C> = Pick<BuiltinHost<C>, 'command' | 'lookup' | 'run' | 'watches'>;

/** Clients running EXEC's queued commands (Redis's CLIENT_DENY_BLOCKING: MONITOR and SSUBSCRIBE refuse to start there). */
const inExec = new WeakSet<object>();

/** True while `client`'s EXEC runs its queued commands. */
export function runningExec(client: object): boolean {
  return inExec.has(client);
}

export function registerTransactions<C>(server: Host<C>): void {
  server.command(
    'multi',
    {
      arity: 1,
      flags: ['nomulti', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Starts a transaction.',
      group: 'transactions',
    },
    (client) => {
      if (client.multi !== undefined) throw new RespError('ERR MULTI calls can not be nested');
      client.multi = [];
      client.multiDirty = false;
      return OK;
    },
  );
  server.command(
    'discard',
    {
      arity: 1,
      flags: ['nomulti', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Discards a transaction.',
      group: 'transactions',
    },
    (client) => {
      if (client.multi === undefined) throw new RespError('ERR DISCARD without MULTI');
      client.multi = undefined;
      server.watches.unwatch(client);
      return OK;
    },
  );
  server.command(
    'exec',
    {
      arity: 1,
      flags: ['nomulti', 'noscript', 'loading', 'stale', 'skip_slowlog'],
      summary: 'Executes all commands in a transaction.',
      group: 'transactions',
    },
    async (client) => {
      const queued = client.multi;
      if (queued === undefined) throw new RespError('ERR EXEC without MULTI');
      client.multi = undefined;
      const dirty = client.multiDirty;
      const aborted = client.watchDirty;
      client.multiDirty = false;
      server.watches.unwatch(client);
      if (dirty) throw new RespError('EXECABORT Transaction discarded because of previous errors.');
      if (aborted) {
        client.reply.nullArray();
        return undefined;
      }
      client.reply.array(queued.length);
      inExec.add(client);
      try {
        for (const argv of queued) {
          const spec = server.lookup((argv[0] as Buffer).toString('latin1'));
          if (spec === undefined) continue; // cannot happen: unknown commands make the transaction dirty
          const pending = server.run(client, spec, argv);
          if (pending !== undefined) await pending;
        }
      } finally {
        inExec.delete(client);
      }
      return undefined;
    },
  );
  server.command(
    'watch',
    {
      arity: -2,
      flags: ['nomulti', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      // As Redis: the keys are found (cluster mode's slot check, COMMAND GETKEYS), only read.
      keySpecs: [{ flags: ['RO'], begin: 1, find: { lastKey: -1, step: 1, limit: 0 } }],
      summary: 'Monitors changes to keys.',
      group: 'transactions',
    },
    (client, argv) => {
      if (client.multi !== undefined) throw new RespError('ERR WATCH inside MULTI is not allowed');
      for (const key of argv.slice(1)) server.watches.watch(client, client.db, key.toString('latin1'));
      return OK;
    },
  );
  server.command(
    'unwatch',
    {
      arity: 1,
      flags: ['noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Forgets about watched keys.',
      group: 'transactions',
    },
    (client) => {
      server.watches.unwatch(client);
      return OK;
    },
  );
}
