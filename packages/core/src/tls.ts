import { readFile } from 'node:fs/promises';
import type { TlsOptions as NodeTlsOptions, SecureContextOptions } from 'node:tls';
import { TlsConfigError } from './errors.js';

/**
 * TLS for a binding. Give the PEM material inline (`cert`, `key`) or as file paths
 * (`certFile`, `keyFile`, `caFile`); files are read at start and again on
 * `PortService.reloadTls()`, so a renewed certificate is picked up without a restart.
 * Any other Node TLS server option (ALPN, ciphers, client certificates…) passes through.
 */
export interface TlsOptions extends NodeTlsOptions {
  certFile?: string;
  keyFile?: string;
  caFile?: string;
}

/** Read the files a {@link TlsOptions} names and return options ready for `tls.createSecureContext`. */
export async function loadTls(options: TlsOptions): Promise<SecureContextOptions & NodeTlsOptions> {
  const { certFile, keyFile, caFile, ...rest } = options;
  const loaded: SecureContextOptions & NodeTlsOptions = { ...rest };
  if (certFile !== undefined) loaded.cert = await readPem('certFile', certFile);
  if (keyFile !== undefined) loaded.key = await readPem('keyFile', keyFile);
  if (caFile !== undefined) loaded.ca = await readPem('caFile', caFile);
  if (loaded.cert === undefined && loaded.pfx === undefined) {
    throw new TlsConfigError('TLS needs a certificate: set tls.cert or tls.certFile (or tls.pfx)');
  }
  if (loaded.key === undefined && loaded.pfx === undefined) {
    throw new TlsConfigError('TLS needs a private key: set tls.key or tls.keyFile (or tls.pfx)');
  }
  return loaded;
}

async function readPem(option: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new TlsConfigError(`Cannot read tls.${option} ${path}: ${(error as Error).message}`, error);
  }
}
