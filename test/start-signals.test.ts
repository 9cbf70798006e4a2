// The examples as their READMEs start them: `npm --prefix examples/NAME start`. SIGTERM to that npm
// process must reach the service, which drains ("stopped") and exits 0, and npm with it; no node
// process may be left holding the ports. (The root's `npm start` is proven by .ci/front-door on a
// fresh clone.)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const started: ChildProcess[] = [];
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

/** Pids of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm --prefix examples/NAME start forwards SIGTERM: the service drains and exits 0', () => {
  it.each([
    ['mini-redis', /listening on redis:\/\//],
    ['chat', /listening on xmpp:\/\//],
  ])(
    '%s',
    async (name, listening) => {
      const dataDir = await mkdtemp(join(tmpdir(), `portbind-start-${name}-`));
      const npm = spawn('npm', ['--prefix', `examples/${name}`, 'start'], {
        cwd: root,
        // Every port ephemeral (XMPPS_PORT, HTTPS_PORT and XMPP_COMPONENT_PORT have fixed defaults).
        env: {
          ...process.env,
          PORT: '0',
          RESP_PORT: '0',
          XMPP_PORT: '0',
          XMPPS_PORT: '0',
          HTTPS_PORT: '0',
          XMPP_COMPONENT_PORT: '0',
          HOST: '127.0.0.1',
          DATA_DIR: dataDir,
          LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      started.push(npm);
      let output = '';
      npm.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      npm.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      const exited = once(npm, 'exit');
      const deadline = Date.now() + 60_000;
      while (!listening.test(output)) {
        if (Date.now() > deadline || npm.exitCode !== null) throw new Error(`${name} did not start:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // npm runs `sh -c "tsc -b && exec node dist/main.js"`: the service is npm's child.
      const service = childrenOf(npm.pid as number);
      expect(service).toHaveLength(1);

      npm.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      expect(output).toContain('"msg":"draining"');
      expect(output).toContain('"msg":"stopped"');
      expect(alive(service[0] as number)).toBe(false);
    },
    90_000,
  );
});
