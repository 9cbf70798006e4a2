import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PortService, type PortServiceOptions, type TlsOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type UserStore, xmppServer } from '@portbind/xmpp';
import { developmentCertificate } from './dev-cert.js';
import { FileUserStore } from './file-users.js';
import { page } from './page.js';

export interface ChatOptions extends PortServiceOptions {
  /** Where accounts are kept. Default: `DATA_DIR` (or ./data)/users.json. */
  users?: UserStore;
}

/**
 * The chat server:
 *   XMPP on XMPP_PORT (default 5222) for any XMPP client, STARTTLS required, domain XMPP_DOMAIN
 *   (default localhost); TLS from TLS_CERT_FILE/TLS_KEY_FILE, or a self-signed development
 *   certificate kept in DATA_DIR (dev-cert.pem, dev-key.pem) across restarts.
 *   HTTP on PORT (default 5000): the chat page, /xmpp-websocket for XMPP over WebSocket, and
 *   /livez, /readyz. A page on http://localhost may log in without TLS (loopback only).
 */
export async function createChat(options: ChatOptions = {}): Promise<PortService> {
  const env = options.env ?? process.env;
  const domain = env.XMPP_DOMAIN ?? 'localhost';
  const users = options.users ?? new FileUserStore(join(env.DATA_DIR ?? 'data', 'users.json'));
  // REGISTRATION=open lets clients create accounts themselves (XEP-0077), as Conversations and Gajim offer.
  const xmpp = xmppServer({ domain, users, allowPlaintext: 'loopback', registration: env.REGISTRATION === 'open' });
  const tls = await tlsOptions(env, domain);
  const browserClient = await readFile(createRequire(import.meta.url).resolve('@xmpp/client/dist/xmpp.min.js'));

  const http = httpAdapter({
    health: true,
    upgrades: { '/xmpp-websocket': xmpp.websocket() },
    fetch: (request) => {
      const path = new URL(request.url).pathname;
      if (path === '/') return new Response(page(domain), { headers: { 'content-type': 'text/html; charset=utf-8' } });
      // The XMPP client the page runs: @xmpp/client's browser build.
      if (path === '/xmpp.min.js') return new Response(browserClient, { headers: { 'content-type': 'text/javascript; charset=utf-8' } });
      return new Response('Not Found\n', { status: 404 });
    },
  });

  const service = new PortService(options);
  service.bind(xmpp.c2s(), { tls });
  service.bind(http);
  return service;
}

async function tlsOptions(env: Record<string, string | undefined>, domain: string): Promise<TlsOptions> {
  if (env.TLS_CERT_FILE !== undefined && env.TLS_KEY_FILE !== undefined) return { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE };
  // Local development: a self-signed SHA-256 certificate for the domain, kept in DATA_DIR.
  const { certFile, keyFile } = await developmentCertificate(env.DATA_DIR ?? 'data', domain);
  return { certFile, keyFile };
}
