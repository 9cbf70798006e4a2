import type { MiniRedis } from '../app.js';
import { keyOf } from '../store.js';

// MULTI, EXEC, WATCH are built into the RESP adapter, which knows nothing of our data. Two rules
// of Redis need it, so we wrap the built-in WATCH and EXEC:
// - a watched key that expires before EXEC aborts the transaction (it counts as written);
// - inside EXEC a blocking pop must not block, and clients blocked on keys the transaction
//   pushed to are served once the whole transaction ran.
export function registerTransactionCommands({ resp, keyspace, blocked }: MiniRedis): void {
  const watch = resp.lookup('watch');
  const exec = resp.lookup('exec');
  if (watch === undefined || exec === undefined) throw new Error('the RESP adapter has no built-in WATCH or EXEC');

  resp.command('watch', watch, (client, argv) => {
    // Reading a key deletes it if it has expired already: only expiries after WATCH count.
    for (const arg of argv.slice(1)) keyspace.db(client.db).get(keyOf(arg));
    return watch.handler(client, argv);
  });

  resp.command('exec', exec, (client, argv) => {
    // Watched keys whose time has come expire now, which marks the transaction dirty.
    for (const [db, key] of client.watchedKeys()) keyspace.db(db).get(key);
    return blocked.transaction(client, () => exec.handler(client, argv));
  });
}
