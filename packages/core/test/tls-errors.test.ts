import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { PortService, TlsConfigError } from '../src/index.js';
import { LineAdapter } from './line-adapter.js';

let dir: string;
let first: { cert: string; key: string };
let second: { cert: string; key: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pb-tls-'));
  [first, second] = await Promise.all([selfSignedCert(), selfSignedCert()]);
}, 30_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function startError(certFile: string, keyFile: string): Promise<TlsConfigError> {
  const s = new PortService({ env: {} });
  s.bind(new LineAdapter('secure-line'), { port: 0, host: '127.0.0.1', tls: { certFile, keyFile } });
  let error: unknown;
  await s.start().catch((caught: unknown) => {
    error = caught;
  });
  expect(s.state).toBe('idle');
  expect(error).toBeInstanceOf(TlsConfigError);
  return error as TlsConfigError;
}

describe('TLS material that cannot be used is a TlsConfigError naming the binding and the file', () => {
  it('a certificate file that is not PEM', async () => {
    const certFile = await file('garbage-cert.pem', 'this is not a certificate\n');
    const keyFile = await file('good-key.pem', first.key);
    const error = await startError(certFile, keyFile);
    expect(error).toMatchObject({ code: 'PB_ERR_TLS', binding: 'secure-line', files: [certFile] });
    expect(error.message).toBe(
      `Cannot use the TLS material of binding secure-line: ${certFile} is not a PEM certificate (ERR_OSSL_PEM_NO_START_LINE)`,
    );
  });

  it('a key file that is not PEM', async () => {
    const certFile = await file('good-cert.pem', first.cert);
    const keyFile = await file('garbage-key.pem', '-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n');
    const error = await startError(certFile, keyFile);
    expect(error).toMatchObject({ code: 'PB_ERR_TLS', binding: 'secure-line', files: [keyFile] });
    expect(error.message).toContain(`binding secure-line: ${keyFile} is not a PEM private key`);
  });

  it('a key that does not match the certificate', async () => {
    const certFile = await file('cert-a.pem', first.cert);
    const keyFile = await file('key-b.pem', second.key);
    const error = await startError(certFile, keyFile);
    expect(error).toMatchObject({ code: 'PB_ERR_TLS', binding: 'secure-line', files: [certFile, keyFile] });
    expect(error.message).toBe(
      `Cannot use the TLS material of binding secure-line: the private key ${keyFile} does not match the certificate ${certFile} (ERR_OSSL_X509_KEY_VALUES_MISMATCH)`,
    );
  });

  it('a bad reload is refused and the binding keeps serving with the certificate it had', async () => {
    const certFile = await file('reload-cert.pem', first.cert);
    const keyFile = await file('reload-key.pem', first.key);
    const s = new PortService({ env: {} });
    const binding = s.bind(new LineAdapter(), { port: 0, host: '127.0.0.1', tls: { certFile, keyFile } });
    await s.start();
    try {
      await writeFile(keyFile, second.key);
      await expect(s.reloadTls()).rejects.toMatchObject({
        code: 'PB_ERR_TLS',
        binding: 'line',
        message: expect.stringContaining('does not match'),
      });
      const socket = tlsConnect({ port: portOf(binding), host: '127.0.0.1', ca: first.cert, servername: 'localhost' });
      await once(socket, 'secureConnect');
      socket.write('still\n');
      const [line] = (await once(socket, 'data')) as [Buffer];
      expect(line.toString()).toBe('still\n');
      socket.destroy();
    } finally {
      await s.stop();
    }
  });
});
