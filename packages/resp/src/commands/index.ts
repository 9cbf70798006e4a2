import type { BuiltinHost } from '../host.js';
import { registerClient } from './clients.js';
import { registerConnection } from './connection.js';
import { registerPubSub } from './pubsub.js';
import { registerCommand, registerInfo } from './server.js';
import { registerTransactions } from './transactions.js';

/** Register the built-in commands; each can be replaced by registering the same name. */
export function registerBuiltins<C>(server: BuiltinHost<C>): void {
  registerConnection(server);
  registerInfo(server);
  registerClient(server);
  registerCommand(server);
  registerTransactions(server);
  registerPubSub(server);
}
