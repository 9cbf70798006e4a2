import { join } from 'node:path';
import { createChat } from './app.js';
import { FileUserStore } from './file-users.js';

// `start` runs the server; `start user add NAME PASSWORD` (or `user del NAME`) manages accounts.
const [command, action, name, password] = process.argv.slice(2);
if (command === 'user') {
  const users = new FileUserStore(join(process.env.DATA_DIR ?? 'data', 'users.json'));
  if (action === 'add' && name !== undefined && password !== undefined) {
    const created = await users.create(name, password);
    console.log(created ? `added ${name}` : `${name} exists already`);
    process.exit(created ? 0 : 1);
  }
  if (action === 'del' && name !== undefined) {
    const deleted = await users.delete(name);
    console.log(deleted ? `deleted ${name}` : `no user ${name}`);
    process.exit(deleted ? 0 : 1);
  }
  console.error('usage: user add NAME PASSWORD | user del NAME');
  process.exit(2);
}
await (await createChat()).run();
