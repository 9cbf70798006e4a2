import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import { respAdapter } from '../src/index.js';

// CLIENT KILL with ACL-style users (the differential test in examples/mini-redis compares the rest
// with a real redis-server byte for byte).

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function start() {
  const resp = respAdapter({ users: { alice: 'a-secret', bob: 'b-secret' }, password: 'default-secret' });
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return portOf(binding);
}

async function login(port: number, user: string, password: string) {
  const socket = await rawConnect(port);
  socket.write(`AUTH ${user} ${password}\r\n`);
  expect(await readUntil(socket, /\r\n$/)).toBe('+OK\r\n');
  return socket;
}

describe('CLIENT KILL USER', () => {
  it('kills the clients of that user, not the caller; an unknown user is an error; no filter is an arity error', async () => {
    const port = await start();
    const alice1 = await login(port, 'alice', 'a-secret');
    const alice2 = await login(port, 'alice', 'a-secret');
    const bob = await login(port, 'bob', 'b-secret');
    const alice2Closed = readUntilClose(alice2, 5000);
    alice1.write('CLIENT KILL USER alice\r\n');
    expect(await readUntil(alice1, /\r\n$/)).toBe(':1\r\n');
    expect(await alice2Closed).toEqual({ data: '', closed: true });
    alice1.write('CLIENT KILL USER carol\r\n*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$4\r\nUSER\r\n$6\r\nca\0rol\r\nCLIENT KILL\r\n');
    expect(await readUntil(alice1, /command\r\n$/)).toBe(
      "-ERR No such user 'carol'\r\n-ERR No such user 'ca'\r\n-ERR wrong number of arguments for 'client|kill' command\r\n",
    );
    // Unauthenticated clients belong to the default user, as in Redis.
    const anonymous = await rawConnect(port);
    const anonymousClosed = readUntilClose(anonymous, 5000);
    bob.write('CLIENT KILL USER default\r\nPING\r\n');
    expect(await readUntil(bob, /PONG\r\n$/)).toBe(':1\r\n+PONG\r\n');
    expect(await anonymousClosed).toEqual({ data: '', closed: true });
    // Killing itself: the reply first, then the close.
    const bobClosed = readUntilClose(bob, 5000);
    bob.write('CLIENT KILL USER bob SKIPME no\r\nPING\r\n');
    expect(await bobClosed).toEqual({ data: ':1\r\n', closed: true });
    alice1.destroy();
  });
});
