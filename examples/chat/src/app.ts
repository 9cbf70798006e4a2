import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Binding, type Bus, PortService, type PortServiceOptions, type TlsOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import {
  components,
  defaultModules,
  muc,
  parseComponentSecrets,
  postgresStorage,
  push,
  sqliteStorage,
  upload,
  type XmppModule,
  type XmppStorage,
  xmppServer,
} from '@portbind/xmpp';
import { developmentCertificate } from './dev-cert.js';
import { page } from './page.js';

export interface ChatOptions extends PortServiceOptions {
  /**
   * Where accounts, rosters, vCards, offline messages, the message archive, PEP data, block lists
   * and stream-management sessions are kept. Default: `sqliteStorage({ file: DATA_DIR/xmpp.sqlite })`
   * (DATA_DIR defaults to ./data). Opening it may throw an `XmppConfigError` with code
   * `PB_ERR_XMPP_STORAGE` (a damaged or unwritable file).
   */
  storage?: XmppStorage;
  /**
   * The server's modules. Default: `defaultModules()` of @portbind/xmpp with group chat (`muc()`,
   * conference.DOMAIN), file upload (`upload()`, upload.DOMAIN), push (`push()`) and, with
   * XMPP_COMPONENTS set, external components.
   */
  modules?: readonly XmppModule[];
  /**
   * The bus between several processes of the chat (`redisBus({ url: BUS_URL })` of
   * @portbind/bus-redis): users on different processes chat as if on one server. Give every process
   * the same storage (one DATA_DIR on one host: the SQLite file is shared in WAL mode; a PostgreSQL
   * store across hosts). Absent: one process.
   */
  bus?: Bus;
}

/** The SQLite file the chat keeps everything in, under `DATA_DIR` (default ./data). */
export function storageFile(env: Record<string, string | undefined> = process.env): string {
  return join(dataDir(env), 'xmpp.sqlite');
}

/**
 * `postgresStorage({ url: DATABASE_URL })` when DATABASE_URL is set (several hosts sharing one database);
 * otherwise `sqliteStorage()` on {@link storageFile}. DATA_DIR is created private (0700) and a new database
 * file 0600 (it holds SCRAM credentials and everyone's messages); SQLite gives its -wal and -shm
 * files the same mode. Throws `PB_ERR_XMPP_STORAGE` for a damaged or unwritable file.
 */
export function openStorage(env: Record<string, string | undefined> = process.env): XmppStorage {
  // Several hosts share one PostgreSQL database (DATABASE_URL); one host keeps the SQLite file.
  if (env.DATABASE_URL !== undefined && env.DATABASE_URL !== '') return postgresStorage({ url: env.DATABASE_URL });
  const file = storageFile(env);
  if (!existsSync(file)) {
    try {
      mkdirSync(dataDir(env), { recursive: true, mode: 0o700 });
      closeSync(openSync(file, 'a', 0o600));
    } catch {
      // sqliteStorage() reports what is wrong with the path.
    }
  }
  return sqliteStorage({ file });
}

function dataDir(env: Record<string, string | undefined>): string {
  return env.DATA_DIR ?? 'data';
}

/** TLS ALPN protocol name of client-to-server XMPP over direct TLS (XEP-0368). */
export const XMPP_CLIENT_ALPN = 'xmpp-client';

/**
 * The chat server:
 *   XMPP on XMPP_PORT (default 5222) for any XMPP client, STARTTLS required, and on XMPPS_PORT
 *   (default 5223) with TLS from the first byte (XEP-0368, ALPN `xmpp-client`); domain XMPP_DOMAIN
 *   (default localhost). TLS from TLS_CERT_FILE/TLS_KEY_FILE, or a self-signed development
 *   certificate kept in DATA_DIR (dev-cert.pem, dev-key.pem) across restarts.
 *   HTTP on PORT (default 5000): the chat page, /xmpp-websocket for XMPP over WebSocket, and
 *   /livez, /readyz. A page on http://localhost may log in without TLS (loopback only). With
 *   HTTPS_PORT set, the same over https:// (the page then uses wss://).
 *   Everything the server keeps lives in DATA_DIR/xmpp.sqlite and survives restarts.
 */
export async function createChat(options: ChatOptions = {}): Promise<PortService> {
  const env = options.env ?? process.env;
  const domain = env.XMPP_DOMAIN ?? 'localhost';
  // Opened now: a damaged or unwritable file fails the start, not the first login.
  const storage = options.storage ?? openStorage(env);
  const bindings: { http?: Binding; https?: Binding } = {};
  // Files shared in chats (XEP-0363): slots from upload.DOMAIN, PUT and GET under /upload/ on the
  // HTTP port(s), the files in DATA_DIR/uploads. Their URLs: UPLOAD_URL, else this server's https://
  // port when HTTPS_PORT is set, else http://localhost:PORT/upload/ (development on this machine).
  const uploads = upload({
    baseUrl: env.UPLOAD_URL ?? (() => uploadUrl(bindings, domain)),
    dir: join(dataDir(env), 'uploads'),
  });
  // External components (XEP-0114), with XMPP_COMPONENTS=bot.example.com=secret,…
  const secrets = parseComponentSecrets(env.XMPP_COMPONENTS);
  const external = Object.keys(secrets).length > 0 ? components({ secrets }) : undefined;
  const modules = options.modules ?? [...defaultModules(), muc(), uploads, push(), ...(external ? [external] : [])];
  // REGISTRATION=open lets clients create accounts themselves (XEP-0077), as Conversations and Gajim offer.
  const xmpp = xmppServer({
    domain,
    storage,
    modules,
    allowPlaintext: 'loopback',
    registration: env.REGISTRATION === 'open',
    bus: options.bus,
  });
  const tls = await tlsOptions(env, domain);
  const assets = await publicFiles();
  const html = page(domain);
  const serveUploads = modules.includes(uploads);
  const fetch = (request: Request): Response | Promise<Response> => {
    const uploaded = serveUploads ? uploads.fetch(request) : undefined;
    if (uploaded !== undefined) return uploaded;
    const path = new URL(request.url).pathname;
    if (path === '/') return new Response(html, { headers: { ...pageHeaders, 'content-type': 'text/html; charset=utf-8' } });
    if (path === '/favicon.ico') return new Response(null, { status: 204 });
    const asset = assets.get(path);
    if (asset !== undefined) return new Response(asset.body, { headers: { ...pageHeaders, 'content-type': asset.type } });
    return new Response('Not Found\n', { status: 404 });
  };
  const web = () => httpAdapter({ health: true, upgrades: { '/xmpp-websocket': xmpp.websocket() }, fetch, bodyLimit: uploads.maxFileSize });

  const service = new PortService(options);
  service.bind(xmpp.c2s(), { tls });
  // Direct TLS (XEP-0368) with the same certificate. Clients offer ALPN `xmpp-client`; one that
  // offers no ALPN at all is served too (only a client offering other protocols alone is refused).
  service.bind(xmpp.c2s({ directTls: true }), { tls: { ...tls, ALPNProtocols: [XMPP_CLIENT_ALPN] } });
  bindings.http = service.bind(web());
  // HTTPS_PORT: the same page over https://, so it talks wss:// (the certificate of the XMPP ports).
  if (env.HTTPS_PORT !== undefined) bindings.https = service.bind(web(), { name: 'https', portEnv: 'HTTPS_PORT', tls });
  // XMPP_COMPONENT_PORT (default 5347), only with components configured.
  if (external !== undefined && modules.includes(external)) service.bind(external.adapter());
  if (options.storage === undefined && existsSync(join(dataDir(env), 'users.json'))) {
    service.logger.warn(
      { file: join(dataDir(env), 'users.json'), storage: storageFile(env) },
      'users.json is no longer read: accounts now live in xmpp.sqlite; add them again with `user add NAME PASSWORD`, then delete users.json',
    );
  }
  return service;
}

/** Where uploaded files are reached without UPLOAD_URL: the https:// binding, else http://localhost. */
function uploadUrl(bindings: { http?: Binding; https?: Binding }, domain: string): string {
  const binding = bindings.https ?? bindings.http;
  const address = binding?.address;
  if (address === undefined || typeof address === 'string') throw new Error('upload: the HTTP binding has no TCP port; set UPLOAD_URL');
  return bindings.https ? `https://${domain}:${address.port}/upload/` : `http://localhost:${address.port}/upload/`;
}

/** The page's script and style: public/ beside src/ and dist/. */
async function publicFiles(): Promise<Map<string, { body: Buffer; type: string }>> {
  const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of ['chat.js', 'xmpp.js', 'chat.css']) {
    const body = await readFile(new URL(`../public/${name}`, import.meta.url));
    files.set(`/${name}`, { body, type: types[name.split('.').pop() ?? ''] ?? 'application/octet-stream' });
  }
  return files;
}

/** The page runs its own scripts and nothing else; pictures may come from any https:// upload service. */
const pageHeaders = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' https: http:; connect-src 'self' ws: wss: https: http:; object-src 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
};

async function tlsOptions(env: Record<string, string | undefined>, domain: string): Promise<TlsOptions> {
  if (env.TLS_CERT_FILE !== undefined && env.TLS_KEY_FILE !== undefined) return { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE };
  // Local development: a self-signed SHA-256 certificate for the domain, kept in DATA_DIR.
  const { certFile, keyFile } = await developmentCertificate(dataDir(env), domain);
  return { certFile, keyFile };
}
