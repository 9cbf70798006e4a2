import type { Bus, MemoryBus } from '@portbind/core';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import type { XmppServer } from '../src/index.js';
import { defaultModules } from '../src/modules/index.js';
import { smacks } from '../src/modules/smacks.js';
import type { XmppStorage } from '../src/stores/types.js';
import { RawTranscript } from './raw-stream.js';
import { OPEN, rawLogin, rawStartTls, start } from './support.js';

// Stream management across processes (issue 12): what cluster-smacks.test.ts and
// cluster-smacks-edge.test.ts share — servers with smacks on a bus, raw streams, journal probes.

export const SM = 'urn:xmpp:sm:3';

export class Raw extends RawTranscript {}

/** One "process": a server with stream management (this resumption window) on `bus`; its log lines in `logs`. */
export async function smNode(bus: Bus, storage: XmppStorage, ttlMs: number, resumeTimeoutMs = 600_000) {
  const modules = [...defaultModules().filter((m) => m.name !== 'smacks'), smacks({ resumeTimeoutMs })];
  const logs: LogLine[] = [];
  const made = await start({ server: { bus, storage, modules, cluster: { sessionTtlMs: ttlMs } }, logger: capturingLogger(logs) });
  await made.server.cluster?.ready;
  return { ...made, logs };
}

export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function bound(port: number, user: string, password: string, resource: string): Promise<Raw> {
  return new Raw(await rawLogin(port, user, password, resource));
}

/** Authenticated on a new stream, nothing bound: where a `<resume/>` goes. */
export async function authenticated(port: number, user = 'juliet', password = 'balcony'): Promise<Raw> {
  const raw = new Raw(await rawStartTls(port));
  const plain = Buffer.from(`\u0000${user}\u0000${password}`).toString('base64');
  raw.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
  await raw.until(/<success[^>]*>/);
  raw.write(OPEN);
  await raw.until(/<\/stream:features>/);
  return raw;
}

/** Enable stream management with resumption: the SM-ID. */
export async function enable(raw: Raw, request = `<enable xmlns='${SM}' resume='true'/>`): Promise<string> {
  raw.write(request);
  const enabled = await raw.until(/<enabled [^>]*\/>/);
  const id = /id='([^']+)'/.exec(enabled)?.[1];
  if (id === undefined) throw new Error(`no id in ${enabled}`);
  return id;
}

/** The client's link drops (its process lives on); it logs in at `port` and resumes SM-ID `id` there. */
export async function dropAndResume(raw: Raw, id: string, port: number): Promise<Raw> {
  const handled = seen(raw);
  raw.socket.destroy();
  const back = await authenticated(port);
  back.write(`<resume xmlns='${SM}' previd='${id}' h='${handled}'/>`);
  await back.until(/<resumed [^>]*\/>/);
  return back;
}

/** Stanzas the client saw on this stream since `<enabled/>` (what its h counts). */
export function seen(raw: Raw): number {
  return (raw.text.split('<enabled ')[1] ?? '').match(/<(message|presence|iq)[ >]/g)?.length ?? 0;
}

export function bodies(text: string): string[] {
  return [...text.matchAll(/<body>([^<]*)<\/body>/g)].map((m) => m[1] as string);
}

export function chat(to: string, body: string): string {
  return `<message to='${to}' type='chat' id='${body}'><body>${body}</body></message>`;
}

/** The journal of an SM-ID holds a stanza with this body (its holder wrote it to the session). */
export async function journaled(bus: MemoryBus, id: string, body: string): Promise<boolean> {
  const entries = await bus.stream(`xmpp:sm:localhost:${id}`).entries({ count: 5000 });
  return entries.some((entry) => entry.data.toString().includes(`<body>${body}</body>`));
}

/** juliet/phone on `a` with stream management enabled (this `<enable/>`) and available, as `b` sees; romeo/garden on `b`. */
export async function julietOnA(
  a: { port: number },
  b: { port: number; server: XmppServer },
  enableWith?: string,
): Promise<{ romeo: Raw; juliet: Raw; id: string }> {
  const romeo = await bound(b.port, 'romeo', 'r0meo!', 'garden');
  const juliet = await bound(a.port, 'juliet', 'balcony', 'phone');
  const id = await enable(juliet, enableWith);
  juliet.write('<presence/>');
  await until(() => b.server.cluster?.remotePresence('juliet@localhost/phone')?.available === true, 'B sees juliet');
  return { romeo, juliet, id };
}
