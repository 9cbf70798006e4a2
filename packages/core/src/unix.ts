import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, lstat, unlink } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { SocketPathError } from './errors.js';

/** The socket file a binding made: removed on stop only if it is still that very socket. */
export interface OwnedSocket {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

type Listen = (path: string) => Promise<void>;

/**
 * Listen on a Unix socket path without ever deleting anything but a stale socket.
 *
 * - Nothing at `path`: listen there.
 * - A socket nobody answers on (left by a process that died): removed, then listen.
 * - A socket somebody answers on: `EADDRINUSE`.
 * - Anything else (a regular file, a directory, a FIFO…): a {@link SocketPathError}; it stays untouched.
 *
 * libuv unlinks a pipe server's path when the server closes, whatever is there by then. So the
 * server listens on a temporary name in the same directory, which is then hard-linked to `path`
 * (`link()` never replaces an existing file) and unlinked; on stop, {@link removeOwnedSocket}
 * removes `path` only if it still is the socket made here.
 */
export async function listenUnix(
  server: Server,
  path: string,
  listen: Listen,
  describe: { binding: string; variable: string },
): Promise<OwnedSocket> {
  await clearStale(path, describe);
  const temporary = join(dirname(path), `.${basename(path).slice(0, 8)}.${randomBytes(4).toString('hex')}~`);
  if (Buffer.byteLength(temporary) > 107) {
    // No room for a temporary name: listen on the path itself (checked just above).
    await listen(path);
    return owned(path);
  }
  await listen(temporary);
  try {
    await link(temporary, path);
  } catch (error) {
    await closeServer(server);
    throw error; // EEXIST: something appeared at `path` in the meantime; it stays untouched.
  } finally {
    await unlink(temporary).catch(() => {});
  }
  return owned(path);
}

/** Remove the socket file this binding made, if `path` still is that socket. Never throws. */
export async function removeOwnedSocket(socket: OwnedSocket): Promise<void> {
  const stats = await lstat(socket.path).catch(() => undefined);
  if (stats?.isSocket() && stats.dev === socket.dev && stats.ino === socket.ino) {
    await unlink(socket.path).catch(() => {});
  }
}

async function owned(path: string): Promise<OwnedSocket> {
  const stats = await lstat(path);
  return { path, dev: stats.dev, ino: stats.ino };
}

async function clearStale(path: string, describe: { binding: string; variable: string }): Promise<void> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (stats === undefined) return;
  if (!stats.isSocket()) {
    throw new SocketPathError(describe.binding, describe.variable, path, kindOf(stats));
  }
  const answer = await probe(path);
  if (answer === 'alive') {
    throw Object.assign(new Error(`a server answers on ${path}`), { code: 'EADDRINUSE' });
  }
  // Stale: nobody listens. Remove it only if it still is the same socket file.
  const again = await lstat(path).catch(() => undefined);
  if (again?.isSocket() && again.ino === stats.ino && again.dev === stats.dev) await unlink(path);
}

function kindOf(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'a file that is not a socket';
}

function probe(path: string): Promise<'alive' | 'stale'> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve('alive');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve('stale');
      else if (error.code === 'EAGAIN')
        resolve('alive'); // its backlog is full: somebody listens
      else reject(error);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
