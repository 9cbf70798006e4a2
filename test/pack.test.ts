// The packages as users get them: `pnpm pack` of each, installed with npm into a fresh project
// outside the monorepo, imported, type-checked under `tsc --strict` WITHOUT skipLibCheck (so a
// missing `@types/…` dependency of a package's public types shows up as it would for a user), and
// run: one service that speaks HTTP, WebSocket, RESP and XMPP, answered over real sockets, drained.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packages = ['core', 'http', 'ws', 'resp', 'xmpp', 'bus-redis'];

let work: string;
let app: string;
const tarballs = new Map<string, string>();

const appSource = `
import { connect } from 'node:net';
import { PortService, PortbindError } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { wsEndpoint } from '@portbind/ws';
import { respAdapter } from '@portbind/resp';
import { MemoryUserStore, xmppServer } from '@portbind/xmpp';
import { busFromEnv } from '@portbind/bus-redis';
import WebSocket from 'ws';

function exchange(port: number, send: string, until: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(send));
    let got = '';
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString();
      if (until(got)) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    setTimeout(() => reject(new Error('no answer: ' + got)), 5000).unref();
  });
}

// No BUS_URL: the bus of this process alone (memoryBus), as a user's first run.
const bus = await busFromEnv({});
const echo = wsEndpoint({ bus, message: (conn, data) => void conn.send(data.toString()) });
const users = new MemoryUserStore();
await users.create('alice', 'secret');
const bad = new PortService({ env: { PORT: 'nope' } });
bad.bind(httpAdapter());
try {
  await bad.start();
} catch (error) {
  if (!(error instanceof PortbindError)) throw error;
  console.log('config error code', error.code);
}
`;

const appSource2 = `
const ok = new PortService();
const h = ok.bind(httpAdapter({ upgrades: { '/echo': echo }, fetch: () => Response.json({ hello: 'world' }) }), { port: 0, host: '127.0.0.1' });
const r = ok.bind(respAdapter({ bus }), { port: 0, host: '127.0.0.1' });
const x = ok.bind(xmppServer({ domain: 'localhost', users, allowPlaintext: 'loopback' }).c2s(), { port: 0, host: '127.0.0.1' });
await ok.start();
const port = (b: typeof h): number => {
  const address = b.address;
  if (typeof address === 'string') throw new Error('unix socket');
  return address.port;
};
const body = (await (await fetch(h.url + 'x')).json()) as { hello: string };
console.log('http', body.hello);
const ws = new WebSocket(h.url.replace('http', 'ws') + 'echo');
const echoed = await new Promise<string>((resolve, reject) => {
  ws.on('open', () => ws.send('ping'));
  ws.on('message', (data) => resolve(String(data)));
  ws.on('error', reject);
});
ws.close();
console.log('ws', echoed);
console.log('resp', (await exchange(port(r), '*1\\r\\n$4\\r\\nPING\\r\\n', (t) => t.includes('\\r\\n'))).trim());
const header = await exchange(
  port(x),
  "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
  (t) => t.includes('</stream:features>'),
);
console.log('xmpp', header.includes('<stream:stream') && header.includes('SCRAM-SHA-256'));
const report = await ok.stop();
console.log('stopped', report.forced);
await bus.close();
`;

describe('packed packages installed outside the monorepo', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'portbind-pack-'));
    for (const name of packages) {
      const dir = join(root, 'packages', name);
      await run('npx', ['--yes', 'pnpm@10.34.8', 'pack', '--pack-destination', work], { cwd: dir });
    }
    for (const file of await readdir(work)) {
      const match = /^portbind-([\w-]+?)-[\d.]+\.tgz$/.exec(file);
      if (match?.[1]) tarballs.set(match[1], join(work, file));
    }
    app = join(work, 'app');
    const manifest = {
      name: 'portbind-user',
      private: true,
      type: 'module',
      dependencies: {
        ...Object.fromEntries(packages.map((name) => [`@portbind/${name}`, `file:${tarballs.get(name)}`])),
        ws: '^8.18.0',
      },
      devDependencies: { typescript: '5.9.3', '@types/node': '^20.19.0' },
      // The packed packages depend on each other by version: take those from the tarballs too.
      overrides: Object.fromEntries(packages.map((name) => [`@portbind/${name}`, `file:${tarballs.get(name)}`])),
    };
    await run('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify(manifest, null, 2));
    await writeFile(join(app, 'app.ts'), appSource + appSource2);
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          types: ['node'],
          outDir: 'dist',
        },
        files: ['app.ts'],
      }),
    );
    // better-sqlite3 (the XMPP server's embedded storage) builds from source here: about two minutes.
    await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, timeout: 480_000 });
  }, 600_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs every package with its built types and no workspace: ranges left', async () => {
    expect([...tarballs.keys()].sort()).toEqual([...packages].sort());
    for (const name of packages) {
      const installed = JSON.parse(await readFile(join(app, 'node_modules', '@portbind', name, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
        exports: Record<string, Record<string, string>>;
      };
      for (const [dep, range] of Object.entries(installed.dependencies ?? {})) {
        expect(range, `${name} depends on ${dep}@${range}`).not.toMatch(/^workspace:/);
      }
      const types = installed.exports['.']?.types;
      expect(types).toBeDefined();
      await expect(readFile(join(app, 'node_modules', '@portbind', name, types ?? ''), 'utf8')).resolves.toContain('export');
    }
  });

  it('type-checks a user project under tsc --strict without skipLibCheck', async () => {
    const result = await run('npx', ['tsc', '-p', '.'], { cwd: app }).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(result).toBe('');
  }, 120_000);

  it('runs: HTTP, WebSocket, RESP and XMPP answer, a bad PORT is a PortbindError, stop drains', async () => {
    const { stdout } = await run('node', ['dist/app.js'], { cwd: app, timeout: 60_000, env: { ...process.env, LOG_LEVEL: 'silent' } });
    expect(stdout.trim().split('\n')).toEqual([
      'config error code PB_ERR_CONFIG',
      'http world',
      'ws ping',
      'resp +PONG',
      'xmpp true',
      'stopped 0',
    ]);
    // The XMPP server's default storage: an SQLite file in ./data, made by the packed better-sqlite3.
    expect((await stat(join(app, 'data', 'xmpp.sqlite'))).size).toBeGreaterThan(0);
  }, 90_000);
});
