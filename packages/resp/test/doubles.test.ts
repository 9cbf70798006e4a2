import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { type RespOptions, respAdapter } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

/** A server whose SCORES command writes doubles through the writer and as reply values. */
async function start(options: RespOptions = {}): Promise<number> {
  const resp = respAdapter(options);
  resp.command('scores', { arity: 1 }, (client) => {
    client.reply.array(4).double(0.1).double(1e-7).double(-0).double(Number.POSITIVE_INFINITY);
  });
  resp.command('value', { arity: 1 }, () => [1 / 3, 1e300]);
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return portOf(binding);
}

async function exchange(port: number, bytes: string, until: RegExp): Promise<string> {
  const socket = await rawConnect(port);
  socket.write(bytes);
  const reply = await readUntil(socket, until);
  socket.destroy();
  return reply;
}

describe('doubles follow the reported server version (networking.c addReplyDouble)', () => {
  it('7.0.x prints "%.17g", on RESP2 and RESP3', async () => {
    const port = await start({ serverVersion: '7.0.15' });
    const resp2 = '*4\r\n$19\r\n0.10000000000000001\r\n$22\r\n9.9999999999999995e-08\r\n$2\r\n-0\r\n$3\r\ninf\r\n';
    const values2 = '*2\r\n$19\r\n0.33333333333333331\r\n$23\r\n1.0000000000000001e+300\r\n';
    expect(await exchange(port, 'SCORES\r\nVALUE\r\n', /e\+300\r\n$/)).toBe(resp2 + values2);
    const hello = await exchange(port, 'HELLO 3\r\nSCORES\r\nVALUE\r\n', /e\+300\r\n$/);
    expect(hello.slice(hello.indexOf('*4\r\n'))).toBe(
      '*4\r\n,0.10000000000000001\r\n,9.9999999999999995e-08\r\n,-0\r\n,inf\r\n*2\r\n,0.33333333333333331\r\n,1.0000000000000001e+300\r\n',
    );
  });

  it('7.2 (the default) prints the shortest text, laid out as fpconv_dtoa', async () => {
    const port = await start();
    expect(await exchange(port, 'SCORES\r\nVALUE\r\n', /e\+300\r\n$/)).toBe(
      '*4\r\n$3\r\n0.1\r\n$4\r\n1e-7\r\n$2\r\n-0\r\n$3\r\ninf\r\n*2\r\n$18\r\n0.3333333333333333\r\n$6\r\n1e+300\r\n',
    );
    const hello = await exchange(port, 'HELLO 3\r\nSCORES\r\nVALUE\r\n', /e\+300\r\n$/);
    expect(hello.slice(hello.indexOf('*4\r\n'))).toBe('*4\r\n,0.1\r\n,1e-7\r\n,-0\r\n,inf\r\n*2\r\n,0.3333333333333333\r\n,1e+300\r\n');
  });
});
