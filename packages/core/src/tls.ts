import { readFile } from 'node:fs/promises';
import { createSecureContext, type TlsOptions as NodeTlsOptions, type SecureContext, type SecureContextOptions } from 'node:tls';
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
export async function loadTls(options: TlsOptions, binding?: string): Promise<SecureContextOptions & NodeTlsOptions> {
  const { certFile, keyFile, caFile, ...rest } = options;
  const loaded: SecureContextOptions & NodeTlsOptions = { ...rest };
  const where = binding === undefined ? '' : ` for binding ${binding}`;
  if (certFile !== undefined) loaded.cert = await readPem('certFile', certFile, where);
  if (keyFile !== undefined) loaded.key = await readPem('keyFile', keyFile, where);
  if (caFile !== undefined) loaded.ca = await readPem('caFile', caFile, where);
  if (loaded.cert === undefined && loaded.pfx === undefined) {
    throw new TlsConfigError(`TLS${where} needs a certificate: set tls.cert or tls.certFile (or tls.pfx)`);
  }
  if (loaded.key === undefined && loaded.pfx === undefined) {
    throw new TlsConfigError(`TLS${where} needs a private key: set tls.key or tls.keyFile (or tls.pfx)`);
  }
  return loaded;
}

/**
 * `tls.createSecureContext()`, with OpenSSL's bare codes (`ERR_OSSL_PEM_NO_START_LINE`,
 * `ERR_OSSL_X509_KEY_VALUES_MISMATCH`…) turned into a {@link TlsConfigError} that names the
 * binding, the file (or option) at fault and what is wrong with it.
 */
export function secureContextFor(options: TlsOptions, loaded: SecureContextOptions, binding: string): SecureContext {
  try {
    return createSecureContext(loaded);
  } catch (error) {
    const certName = options.certFile ?? 'tls.cert (inline)';
    const keyName = options.keyFile ?? 'tls.key (inline)';
    const code = (error as NodeJS.ErrnoException).code ?? '';
    let why: string;
    let files: string[];
    if (loaded.cert !== undefined && fails({ cert: loaded.cert })) {
      why = `${certName} is not a PEM certificate`;
      files = [certName];
    } else if (loaded.key !== undefined && fails({ key: loaded.key, passphrase: loaded.passphrase })) {
      why = `${keyName} is not a PEM private key (or its passphrase is wrong)`;
      files = [keyName];
    } else if (code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' || /key values mismatch/i.test((error as Error).message)) {
      why = `the private key ${keyName} does not match the certificate ${certName}`;
      files = [certName, keyName];
    } else if (options.caFile !== undefined && loaded.ca !== undefined && fails({ ca: loaded.ca })) {
      why = `${options.caFile} is not a PEM CA certificate`;
      files = [options.caFile];
    } else {
      why = (error as Error).message;
      files = [options.certFile, options.keyFile, options.caFile].filter((file): file is string => file !== undefined);
    }
    throw new TlsConfigError(`Cannot use the TLS material of binding ${binding}: ${why} (${code || 'OpenSSL error'})`, error, {
      binding,
      files,
    });
  }
}

function fails(options: SecureContextOptions): boolean {
  try {
    createSecureContext(options);
    return false;
  } catch {
    return true;
  }
}

async function readPem(option: string, path: string, where: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new TlsConfigError(`Cannot read tls.${option} ${path}${where}: ${(error as Error).message}`, error, {
      files: [path],
    });
  }
}
