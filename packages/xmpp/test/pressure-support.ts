import type { LogLine } from '../../../test/support/log.js';
import { Raw } from './raw-stream.js';

// Shared by the tests of a storage falling behind (SQLite's thread in mam.test.ts, PostgreSQL in
// postgres.test.ts): two users chatting, and a burst that makes the server say its storage is behind.

/** An archive count query (RSM max 0). */
export const ARCHIVE_COUNT =
  "<query xmlns='urn:xmpp:mam:2' queryid='c'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></query>";

/**
 * juliet and romeo (resource `orchard`) online, one message from her archived for both: the archives' owners exist
 * and what the archive reads per user (preferences, the account) is read and kept, before a test holds a lock.
 */
export async function archivingPair(port: number): Promise<{ juliet: Raw; romeo: Raw }> {
  const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
  const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
  juliet.send('<presence/>');
  romeo.send('<presence/>');
  await juliet.sync();
  await romeo.sync();
  juliet.send("<message type='chat' to='romeo@localhost/orchard' id='first'><body>first</body></message>");
  await romeo.next(/<body>first<\/body>/);
  for (const [who, raw] of [
    ['romeo', romeo],
    ['juliet', juliet],
  ] as const) {
    const answer = await raw.iq('c0', ARCHIVE_COUNT, "type='set'");
    if (!answer.includes('<count>1</count>')) throw new Error(`${who}'s archive should hold the first message: ${answer}`);
  }
  return { juliet, romeo };
}

/** The server said (a warning) that its storage is behind. */
export const saidBehind = (lines: readonly LogLine[]): boolean =>
  lines.some((line) => line.level === 'warn' && line.message?.includes('the storage is behind') === true);

/**
 * juliet sends romeo `count` messages in one write (ids p0…, `filler` in each body); resolves once the server said it
 * is behind, or after 10 s.
 */
export async function burstUntilBehind(juliet: Raw, lines: readonly LogLine[], count = 300, filler = ''): Promise<void> {
  let burst = '';
  for (let i = 0; i < count; i++)
    burst += `<message type='chat' to='romeo@localhost/orchard' id='p${i}'><body>line ${i}${filler}</body></message>`;
  juliet.send(burst);
  const deadline = Date.now() + 10_000;
  while (!saidBehind(lines) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

/**
 * Another connection (a backup, another server on the same file) holds `file`'s write lock, `BEGIN IMMEDIATE`:
 * the storage thread's commits wait for it (busy_timeout). Meanwhile a 10 ms timer measures how late the event
 * loop runs: `lag()` is the longest gap seen. `release()` commits, closes and stops the timer.
 */
export async function lockedSqlite(file: string): Promise<{ lag(): number; release(): void }> {
  const Database = (await import('better-sqlite3')).default;
  const locker = new Database(file);
  locker.exec('BEGIN IMMEDIATE');
  let lag = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    lag = Math.max(lag, now - last);
    last = now;
  }, 10);
  return {
    lag: () => lag,
    release() {
      clearInterval(ticker);
      locker.exec('COMMIT');
      locker.close();
    },
  };
}
