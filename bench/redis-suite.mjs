// Redis's own test suite (tests/unit/*.tcl of redis/redis, unmodified) in external mode against a
// real redis-server and mini-redis, side by side:
//   node bench/redis-suite.mjs --suite DIR [--units protocol,type/zset] [--targets redis,mini-redis]
//                              [--durable] [--timeout SECONDS] [--logs DIR] [--failures]
// DIR is a checkout of redis/redis (its runtest and tests/); see bench/redis-suite/README.md.
// Every unit runs against a freshly started server of each target:
//   ./runtest --host 127.0.0.1 --port P --single unit/X --tags -needs:debug [--durable]
// and the [ok]/[err]/[exception] lines of its output are counted. Needs tclsh (apt-get install tcl),
// Debian's redis-server, and a build of mini-redis (npx tsc -b examples/mini-redis).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : args[index + 1];
};
const defaultUnits = [
  'protocol',
  'pubsub',
  'multi',
  'introspection',
  'keyspace',
  'expire',
  'scan',
  'quit',
  'info-command',
  'querybuf',
  'type/string',
  'type/incr',
  'type/list',
  'type/hash',
  'type/set',
  'type/zset',
];
const suite = option('suite', process.env.REDIS_SUITE);
if (!suite || !existsSync(join(suite, 'runtest'))) {
  console.error('usage: node bench/redis-suite.mjs --suite DIR   (DIR: a checkout of redis/redis with runtest and tests/)');
  process.exit(2);
}
const units = option('units', defaultUnits.join(',')).split(',');
const targetNames = option('targets', 'redis,mini-redis').split(',');
const durable = args.includes('--durable');
const unitTimeout = Number(option('timeout', '300'));
const logs = option('logs', undefined);
const showFailures = args.includes('--failures');
if (logs) mkdirSync(logs, { recursive: true });

const targets = {
  redis: async (port, dir) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
      cwd: dir,
    }),
  'mini-redis': async (port, dir) =>
    spawn(process.execPath, [join(here, '..', 'examples', 'mini-redis', 'dist', 'main.js')], {
      env: {
        ...process.env,
        RESP_PORT: String(port),
        PORT: String(await freePort()),
        HOST: '127.0.0.1',
        DATA_DIR: dir,
        LOG_LEVEL: 'silent',
      },
      stdio: 'ignore',
      cwd: dir,
    }),
};

function ping(port) {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      text += chunk;
      if (text.includes('\r\n')) {
        socket.destroy();
        done(text.startsWith('+PONG'));
      }
    });
    socket.on('error', () => done(false));
  });
}

// What runs now, to stop on Ctrl-C / SIGTERM: the server under test and the harness (its process group).
const running = { server: undefined, harness: undefined };
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    try {
      if (running.harness) process.kill(-running.harness.pid, 'SIGKILL');
    } catch {}
    running.server?.child.kill('SIGKILL');
    if (running.server) rmSync(running.server.dir, { recursive: true, force: true });
    process.exit(130);
  });
}

async function start(name) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `redis-suite-${name}-`));
  const child = await targets[name](port, dir);
  running.server = { child, dir };
  for (let i = 0; i < 200 && !(await ping(port)); i++) await new Promise((done) => setTimeout(done, 50));
  return { port, dir, child };
}

async function stop({ child, dir }) {
  running.server = undefined;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  rmSync(dir, { recursive: true, force: true });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the harness colours its output
const ansi = /\x1b\[[0-9;]*m/g;

function runUnit(unit, port) {
  const argv = ['--host', '127.0.0.1', '--port', String(port), '--single', `unit/${unit}`, '--tags', '-needs:debug'];
  // The harness listens for its test client on a free port in [base-32, base) whose port+10000 is
  // free too (default base 21111): a random base lets two runs (or another user's) share the machine.
  argv.push('--baseport', String(20000 + Math.floor(Math.random() * 30000)));
  if (durable) argv.push('--durable');
  return new Promise((done) => {
    const child = spawn('./runtest', argv, { cwd: suite, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    running.harness = child;
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL'); // the harness and its test client
      } catch {}
    }, unitTimeout * 1000);
    child.on('close', (code) => {
      running.harness = undefined;
      clearTimeout(timer);
      done({ output: output.replace(ansi, ''), code, timedOut, command: `./runtest ${argv.join(' ')}` });
    });
  });
}

function count(output) {
  const result = { ok: 0, err: 0, exception: 0, failed: [] };
  for (const line of output.split('\n')) {
    const match = /^\[(ok|err|exception)\]: (.*)$/.exec(line);
    if (!match) continue;
    result[match[1]]++;
    if (match[1] !== 'ok') result.failed.push(`${match[1]}: ${match[2]}`);
  }
  // An exception without --durable ends the unit: its message follows the [exception] line.
  if (result.exception > 0 || /^(Killing still running|.*\(file "tests\/unit)/m.test(output)) {
    const stop = output.indexOf('[exception]');
    if (stop !== -1)
      result.failed.push(
        output
          .slice(stop, stop + 600)
          .split('\n')
          .slice(0, 4)
          .join(' | '),
      );
  }
  return result;
}

const table = [];
for (const unit of units) {
  const row = { unit };
  for (const name of targetNames) {
    const server = await start(name);
    let run = await runUnit(unit, server.port);
    // The harness's own listening port was taken meanwhile (another run, another user): once more.
    if (run.output.includes("couldn't open socket")) run = await runUnit(unit, server.port);
    await stop(server);
    const counted = count(run.output);
    if (run.timedOut) counted.failed.push(`timeout after ${unitTimeout}s`);
    row[name] = counted;
    if (logs) writeFileSync(join(logs, `${unit.replace('/', '-')}.${name}.log`), `${run.command}\n${run.output}`);
    process.stderr.write(
      `${unit} ${name}: ${counted.ok} ok, ${counted.err} err, ${counted.exception} exception${run.timedOut ? ' (timeout)' : ''}\n`,
    );
  }
  table.push(row);
}

const pad = (text, width) => String(text).padEnd(width);
const padLeft = (text, width) => String(text).padStart(width);
const header = ['unit', ...targetNames.flatMap((name) => [`${name} ok`, `${name} err`]), ...(targetNames.length === 2 ? ['ratio'] : [])];
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
const totals = Object.fromEntries(targetNames.map((name) => [name, { ok: 0, failed: 0 }]));
for (const row of table) {
  const cells = [pad(row.unit, 14)];
  for (const name of targetNames) {
    const { ok, err, exception } = row[name];
    totals[name].ok += ok;
    totals[name].failed += err + exception;
    cells.push(padLeft(ok, 4), padLeft(err + exception, 4));
  }
  if (targetNames.length === 2) {
    const [a, b] = targetNames.map((name) => row[name].ok);
    cells.push(a === 0 ? '–' : `${((b / a) * 100).toFixed(0)} %`);
  }
  console.log(`| ${cells.join(' | ')} |`);
}
const totalCells = ['**total**'];
for (const name of targetNames) totalCells.push(padLeft(totals[name].ok, 4), padLeft(totals[name].failed, 4));
if (targetNames.length === 2) {
  const [a, b] = targetNames.map((name) => totals[name].ok);
  totalCells.push(a === 0 ? '–' : `${((b / a) * 100).toFixed(1)} %`);
}
console.log(`| ${totalCells.join(' | ')} |`);
if (showFailures) {
  for (const row of table) {
    for (const name of targetNames) {
      for (const failure of row[name].failed) console.log(`${row.unit} ${name} ${failure}`);
    }
  }
}
