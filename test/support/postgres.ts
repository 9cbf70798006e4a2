import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis-server.js';

// A real PostgreSQL for tests: Debian's postgresql package (what .ci/run installs) has its programs in
// /usr/lib/postgresql/<major>/bin only (no links in /usr/bin for initdb and postgres). A new cluster in a
// temp dir (initdb, trust authentication, superuser `postgres`), a postmaster on an ephemeral port of
// 127.0.0.1 with its unix socket in that dir. PostgreSQL refuses to run as root: under root (CI), initdb and
// postgres run as the `postgres` user the package created, and the dir is chowned to it.

export interface Postgres {
  port: number;
  /** A connection string for the superuser `postgres` (trust: no password) to this database. */
  url(database?: string): string;
  /** SIGKILL to the postmaster and every backend (its process group), as a crash: waits until they are gone. */
  kill(): Promise<void>;
  /** Starts the postmaster again on the same data and port (after kill() or stop()). */
  restart(): Promise<void>;
  /** Stops it (fast shutdown) and deletes its files. */
  stop(): Promise<void>;
}

/** The directory of Debian's PostgreSQL programs: the newest /usr/lib/postgresql/<major>/bin with initdb. */
export function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const major = majors[0];
  if (major === undefined) throw new Error(`no PostgreSQL under ${root}/*/bin: apt-get install postgresql (bash .ci/run does)`);
  return join(root, major, 'bin');
}

/** Under root, the uid and gid of the `postgres` user; otherwise nothing (run as this user). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (error) {
    throw new Error('tests run as root and PostgreSQL refuses root: no `postgres` user (apt-get install postgresql creates it)', {
      cause: error,
    });
  }
}

const ENV = { PATH: '/usr/bin:/bin', LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };

export async function startPostgres(): Promise<Postgres> {
  const bin = postgresBin();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'portbind-pg-'));
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  try {
    execFileSync(
      join(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync', '--no-instructions'],
      { ...user, env: ENV, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${stderr || String(error)}`);
  }

  let child: ChildProcess | undefined;
  let port = 0;
  let log = '';

  const launch = async (): Promise<void> => {
    log = '';
    const started: ChildProcess = spawn(
      join(bin, 'postgres'),
      [
        ...['-D', data, '-p', String(port), '-k', dir],
        ...['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100', '-c', 'shared_buffers=16MB'],
        // A test database: no fsync (-F): a commit is in the operating system's cache, which survives a
        // SIGKILL of PostgreSQL (kill()); synchronous_commit stays on, or a killed server loses its last commits.
        ...['-F', '-c', 'full_page_writes=off'],
      ],
      // Its own process group: kill() ends the postmaster and its backends together.
      { ...user, env: ENV, cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = started;
    const exited = once(started, 'exit');
    const ready = new Promise<boolean>((resolve) => {
      started.stderr?.setEncoding('utf8');
      started.stderr?.on('data', (chunk: string) => {
        log = (log + chunk).slice(-8000);
        if (log.includes('database system is ready to accept connections')) resolve(true);
      });
      void exited.then(() => resolve(false));
    });
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000).unref());
    if (!(await Promise.race([ready, timeout]))) {
      started.kill('SIGKILL');
      throw new Error(`postgres did not start on port ${port}: ${log}`);
    }
  };

  const stopChild = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    if (signal === 'SIGKILL' && running.pid !== undefined) {
      try {
        process.kill(-running.pid, 'SIGKILL');
      } catch {
        running.kill('SIGKILL');
      }
    } else running.kill(signal);
    await exited;
    if (signal === 'SIGKILL' && running.pid !== undefined) {
      // The backends of the group: gone once kill(-pgid, 0) fails.
      for (let i = 0; i < 400; i++) {
        try {
          process.kill(-running.pid, 0);
        } catch {
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
  };

  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      await stopChild('SIGKILL');
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }

  return {
    get port() {
      return port;
    },
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    kill: () => stopChild('SIGKILL'),
    restart: async () => {
      await stopChild('SIGINT');
      await launch();
    },
    stop: async () => {
      // SIGINT: fast shutdown (clients disconnected, no wait for them).
      await stopChild('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
