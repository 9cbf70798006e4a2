import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { deriveScram, normalizeUsername, type StoredUser, type UserStore } from '@portbind/xmpp';

interface StoredJson {
  username: string;
  sha1: { salt: string; iterations: number; storedKey: string; serverKey: string };
  sha256: { salt: string; iterations: number; storedKey: string; serverKey: string };
}

/**
 * Accounts in a JSON file: salted SCRAM credentials only, never passwords. `user add` writes it;
 * the server rereads it when it changes, so an account added while the server runs works at once.
 */
export class FileUserStore implements UserStore {
  readonly path: string;
  #users = new Map<string, StoredUser>();
  #loadedAt = -1;

  constructor(path: string) {
    this.path = path;
  }

  get(username: string): StoredUser | undefined {
    this.#reload();
    const key = normalizeUsername(username);
    return key === undefined ? undefined : this.#users.get(key);
  }

  async create(username: string, password: string): Promise<boolean> {
    this.#reload();
    const key = normalizeUsername(username);
    if (key === undefined) throw new Error(`not a valid username: ${username}`);
    if (this.#users.has(key)) return false;
    this.#users.set(key, { username: key, sha1: deriveScram(password, 'sha1'), sha256: deriveScram(password, 'sha256') });
    await this.#save();
    return true;
  }

  async setPassword(username: string, password: string): Promise<boolean> {
    this.#reload();
    const key = normalizeUsername(username);
    if (key === undefined || !this.#users.has(key)) return false;
    this.#users.set(key, { username: key, sha1: deriveScram(password, 'sha1'), sha256: deriveScram(password, 'sha256') });
    await this.#save();
    return true;
  }

  async delete(username: string): Promise<boolean> {
    this.#reload();
    const key = normalizeUsername(username);
    if (key === undefined || !this.#users.delete(key)) return false;
    await this.#save();
    return true;
  }

  #reload(): void {
    if (!existsSync(this.path)) return;
    const mtime = statSync(this.path).mtimeMs;
    if (mtime === this.#loadedAt) return;
    const entries = JSON.parse(readFileSync(this.path, 'utf8')) as StoredJson[];
    const decode = (c: StoredJson['sha1']) => ({
      salt: Buffer.from(c.salt, 'base64'),
      iterations: c.iterations,
      storedKey: Buffer.from(c.storedKey, 'base64'),
      serverKey: Buffer.from(c.serverKey, 'base64'),
    });
    this.#users = new Map(
      entries.map((entry) => [entry.username, { username: entry.username, sha1: decode(entry.sha1), sha256: decode(entry.sha256) }]),
    );
    this.#loadedAt = mtime;
  }

  async #save(): Promise<void> {
    const encode = (c: StoredUser['sha1']) => ({
      salt: c.salt.toString('base64'),
      iterations: c.iterations,
      storedKey: c.storedKey.toString('base64'),
      serverKey: c.serverKey.toString('base64'),
    });
    const entries: StoredJson[] = [...this.#users.values()].map((user) => ({
      username: user.username,
      sha1: encode(user.sha1),
      sha256: encode(user.sha256),
    }));
    await mkdir(dirname(this.path), { recursive: true });
    // Write then rename: a reader never sees half a file.
    await writeFile(`${this.path}.tmp`, `${JSON.stringify(entries, null, 2)}\n`, { mode: 0o600 });
    await rename(`${this.path}.tmp`, this.path);
  }
}
