import { describe, expect, it } from 'vitest';
import { ConfigError, parsePort, resolveListen } from '../src/index.js';

const defaults = { portEnv: 'PORT', defaultPort: 5000 };

describe('resolveListen', () => {
  it('uses the default port on all interfaces when nothing is set', () => {
    expect(resolveListen({}, defaults, {})).toEqual({ kind: 'tcp', port: 5000, host: undefined, source: 'default' });
  });

  it('reads PORT and HOST from the environment', () => {
    expect(resolveListen({}, defaults, { PORT: '8080', HOST: '127.0.0.1' })).toEqual({
      kind: 'tcp',
      port: 8080,
      host: '127.0.0.1',
      source: 'env PORT',
    });
  });

  it('reads a named variable such as RESP_PORT', () => {
    const spec = resolveListen({}, { portEnv: 'RESP_PORT', defaultPort: 6379 }, { PORT: '5000', RESP_PORT: '6380' });
    expect(spec).toMatchObject({ kind: 'tcp', port: 6380 });
  });

  it('lets explicit options win over the environment', () => {
    expect(resolveListen({ port: 0, host: '::1' }, defaults, { PORT: '8080', HOST: '127.0.0.1' })).toMatchObject({ port: 0, host: '::1' });
  });

  it('accepts port 0 for an ephemeral port', () => {
    expect(resolveListen({}, defaults, { PORT: '0' })).toMatchObject({ port: 0 });
  });

  it('takes a Unix socket path from options or from the port variable', () => {
    expect(resolveListen({ path: '/tmp/a.sock' }, defaults, {})).toMatchObject({ kind: 'unix', path: '/tmp/a.sock' });
    expect(resolveListen({}, defaults, { PORT: 'unix:/tmp/b.sock' })).toMatchObject({ kind: 'unix', path: '/tmp/b.sock' });
    expect(resolveListen({}, defaults, { PORT: '/tmp/c.sock' })).toMatchObject({ kind: 'unix', path: '/tmp/c.sock' });
  });

  it('strips brackets from an IPv6 HOST', () => {
    expect(resolveListen({}, defaults, { HOST: '[::1]' })).toMatchObject({ host: '::1' });
  });

  it.each([['abc'], ['70000'], ['-1'], ['80.5'], ['0x50'], ['1e3'], ['65536']])(
    'rejects PORT=%s, naming the variable and the value',
    (value) => {
      let error: unknown;
      try {
        resolveListen({}, defaults, { PORT: value });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ code: 'PB_ERR_CONFIG', variable: 'PORT', value });
      expect((error as Error).message).toBe(`Invalid PORT=${JSON.stringify(value)}: a port must be an integer from 0 to 65535`);
    },
  );

  it('rejects a bad RESP_PORT by its own name', () => {
    expect(() => resolveListen({}, { portEnv: 'RESP_PORT', defaultPort: 6379 }, { RESP_PORT: 'redis' })).toThrow(
      'Invalid RESP_PORT="redis"',
    );
  });

  it.each([['not a host!'], ['exa_mple.com'], ['-bad.example'], ['a..b']])('rejects HOST=%s', (value) => {
    expect(() => resolveListen({}, defaults, { HOST: value })).toThrow(
      new ConfigError('HOST', value, 'expected an IP address or a host name'),
    );
  });

  it.each([[''], ['  ']])('rejects HOST=%j (set but empty) instead of listening on every interface', (value) => {
    expect(() => resolveListen({}, defaults, { HOST: value })).toThrow(
      /Invalid HOST=".*": set but empty; unset it to listen on all interfaces/,
    );
  });

  it('rejects a Unix socket path longer than the kernel allows', () => {
    expect(() => resolveListen({ path: `/tmp/${'x'.repeat(120)}` }, defaults, {})).toThrow(ConfigError);
  });

  it('parsePort rejects numbers out of range too', () => {
    expect(parsePort('port', 443)).toBe(443);
    expect(() => parsePort('port', -5)).toThrow('Invalid port=-5');
    expect(() => parsePort('port', 1.5)).toThrow('Invalid port=1.5');
  });

  it('rejects PORT= (set but empty) instead of falling back to the default', () => {
    let error: unknown;
    try {
      resolveListen({}, defaults, { PORT: '' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ code: 'PB_ERR_CONFIG', variable: 'PORT', value: '' });
    expect((error as Error).message).toBe('Invalid PORT="": a port must be an integer from 0 to 65535; unset the variable for the default');
    expect(() => resolveListen({}, { portEnv: 'RESP_PORT', defaultPort: 6379 }, { RESP_PORT: '  ' })).toThrow('Invalid RESP_PORT="  "');
    // An unset variable still means the default.
    expect(resolveListen({}, defaults, { PORT: undefined })).toMatchObject({ port: 5000, source: 'default' });
  });

  it('rejects { path, port } together', () => {
    let error: unknown;
    try {
      resolveListen({ path: '/tmp/a.sock', port: 8080 }, defaults, {});
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ code: 'PB_ERR_CONFIG', variable: 'path', value: '/tmp/a.sock' });
    expect((error as Error).message).toBe(
      'Invalid path="/tmp/a.sock": give a Unix socket path or a port, not both (port 8080 was given too)',
    );
    expect(() => resolveListen({ path: '/tmp/a.sock', port: 0 }, defaults, {})).toThrow(ConfigError);
  });

  it.each([
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [-1, '-1'],
  ])('reports { port: %s } as given', (port, shown) => {
    let error: unknown;
    try {
      resolveListen({ port }, defaults, {});
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).value).toBe(port);
    expect((error as Error).message).toBe(`Invalid port=${shown}: a port must be an integer from 0 to 65535`);
  });
});
