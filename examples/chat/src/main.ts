import { redisBus } from '@portbind/bus-redis';
import { createLogger, PortbindError, PortService } from '@portbind/core';
import { createChat } from './app.js';
import { addUser, deleteUser } from './users.js';

// `start` runs the server; `start -- user add NAME PASSWORD` (or `user del NAME`) manages accounts in
// DATA_DIR/xmpp.sqlite, also while the server runs.
const [command, action, name, password] = process.argv.slice(2);
if (command === 'user') {
  try {
    if (action === 'add' && name !== undefined && password !== undefined) {
      const created = await addUser(name, password);
      console.log(created ? `added ${name}` : `${name} exists already`);
      process.exit(created ? 0 : 1);
    }
    if (action === 'del' && name !== undefined) {
      const deleted = await deleteUser(name);
      console.log(deleted ? `deleted ${name}` : `no user ${name}`);
      process.exit(deleted ? 0 : 1);
    }
  } catch (error) {
    console.error(error instanceof PortbindError ? `${error.code}: ${error.message}` : String(error));
    process.exit(1);
  }
  console.error('usage: user add NAME PASSWORD | user del NAME');
  process.exit(2);
}

// BUS_URL=redis://…: several processes (or WORKERS=N) of the chat act as one server; they share the storage
// too (one DATA_DIR on one host, or DATABASE_URL). With WORKERS=N this process only supervises the N workers:
// the function below (the database opened, the bus connected, the ports' adapters built) runs in each worker,
// never here. A configuration error (a damaged database, PB_ERR_XMPP_STORAGE, an unreachable BUS_URL): one
// `start failed` log line, exit 1.
await PortService.run(async () => {
  const busUrl = process.env.BUS_URL;
  const bus = busUrl === undefined || busUrl === '' ? undefined : await redisBus({ url: busUrl, logger: createLogger() });
  return createChat(bus === undefined ? {} : { bus });
});
