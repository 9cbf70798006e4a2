import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TlsOptions } from '@portbind/core';
import { generate } from 'selfsigned';

/** Renew a development certificate this long before it expires. */
const renewBeforeMs = 30 * 24 * 3600 * 1000;

/**
 * A self-signed certificate for local development, signed with SHA-256 and kept in `dataDir`
 * (`dev-cert.pem`, `dev-key.pem`) across restarts, so a client that pinned it (Gajim, Conversations,
 * profanity's `/tls trust`) keeps working. A new one is made when none is there, when it does not
 * name `domain`, or when it expires within 30 days. Returned as files, so `service.reloadTls()` works.
 */
export async function developmentCertificate(dataDir: string, domain: string): Promise<TlsOptions & { created: boolean }> {
  const certFile = join(dataDir, 'dev-cert.pem');
  const keyFile = join(dataDir, 'dev-key.pem');
  const existing = await readFile(certFile, 'utf8').catch(() => undefined);
  const keyExists = await readFile(keyFile).then(
    () => true,
    () => false,
  );
  if (existing !== undefined && keyExists && usable(existing, domain)) return { certFile, keyFile, created: false };
  const notBeforeDate = new Date();
  const notAfterDate = new Date(notBeforeDate.getTime() + 365 * 24 * 3600 * 1000);
  const pems = await generate([{ name: 'commonName', value: domain }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: domain }] }],
  });
  await mkdir(dataDir, { recursive: true });
  await writeFile(keyFile, pems.private, { mode: 0o600 });
  await writeFile(certFile, pems.cert);
  return { certFile, keyFile, created: true };
}

function usable(pem: string, domain: string): boolean {
  try {
    const cert = new X509Certificate(pem);
    return cert.checkHost(domain) !== undefined && Date.parse(cert.validTo) - Date.now() > renewBeforeMs;
  } catch {
    return false;
  }
}
