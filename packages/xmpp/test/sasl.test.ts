import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ChannelBinding,
  type CredentialsLookup,
  decodeSaslPayload,
  deriveScram,
  encodeSaslPayload,
  isSaslFailure,
  LoginThrottle,
  MemoryUserStore,
  networkOf,
  offeredScramMechanisms,
  type ScramHash,
  type ScramMechanism,
  ScramServer,
  type ScramServerOptions,
  type ScramStartResult,
  type StoredUser,
  saslprep,
  scramLookup,
  verifyPlain,
} from '../src/sasl/index.js';

const hashLength: Record<ScramHash, number> = { sha1: 20, sha256: 32 };
const hmac = (hash: ScramHash, key: Buffer, data: string): Buffer => createHmac(hash, key).update(data).digest();
const escapeName = (name: string): string => name.replace(/=/g, '=3D').replace(/,/g, '=2C');

/** A SCRAM client written against RFC 5802 with node:crypto only, independent of the server code. */
class TestClient {
  readonly hash: ScramHash;
  readonly nonce: string;
  readonly gs2Header: string;
  readonly #username: string;
  readonly #password: string;
  readonly #cbData: Buffer;
  #serverSignature: Buffer | undefined;

  constructor(options: { hash: ScramHash; username: string; password: string; nonce?: string; gs2Header?: string; cbData?: Buffer }) {
    this.hash = options.hash;
    this.#username = options.username;
    this.#password = options.password;
    this.nonce = options.nonce ?? 'clientnonce0123456789';
    this.gs2Header = options.gs2Header ?? 'n,,';
    this.#cbData = options.cbData ?? Buffer.alloc(0);
  }

  get bare(): string {
    return `n=${escapeName(this.#username)},r=${this.nonce}`;
  }

  first(): Buffer {
    return Buffer.from(this.gs2Header + this.bare);
  }

  final(challenge: Buffer, overrides: { nonce?: string; cbind?: string } = {}): Buffer {
    const serverFirst = challenge.toString();
    const attributes = new Map(serverFirst.split(',').map((field) => [field.slice(0, 2), field.slice(2)]));
    const nonce = attributes.get('r=') ?? '';
    if (!nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) throw new Error(`bad server nonce in ${serverFirst}`);
    const salt = Buffer.from(attributes.get('s=') ?? '', 'base64');
    const iterations = Number(attributes.get('i='));
    const salted = pbkdf2Sync(this.#password, salt, iterations, hashLength[this.hash], this.hash);
    const clientKey = hmac(this.hash, salted, 'Client Key');
    const storedKey = createHash(this.hash).update(clientKey).digest();
    const cbind = overrides.cbind ?? Buffer.concat([Buffer.from(this.gs2Header), this.#cbData]).toString('base64');
    const withoutProof = `c=${cbind},r=${overrides.nonce ?? nonce}`;
    const authMessage = `${this.bare},${serverFirst},${withoutProof}`;
    const signature = hmac(this.hash, storedKey, authMessage);
    const proof = Buffer.from(clientKey.map((byte, i) => byte ^ (signature[i] ?? 0)));
    this.#serverSignature = hmac(this.hash, hmac(this.hash, salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** Whether the server-final message proves the server knew the ServerKey. */
  verify(serverFinal: Buffer): boolean {
    return this.#serverSignature !== undefined && serverFinal.toString() === `v=${this.#serverSignature.toString('base64')}`;
  }
}

function challengeOf(result: ScramStartResult): Buffer {
  if ('failure' in result) throw new Error(`unexpected failure: ${result.failure} ${result.text ?? ''}`);
  return result.challenge;
}

/** A store with "user"/"pencil", shared by most tests (PBKDF2 is slow enough to do once). */
const store = new MemoryUserStore();
store.create('user', 'pencil');
store.create('a,b=c', 'escaped');
const lookup = scramLookup(store);

function server(mechanism: ScramMechanism, options: Partial<ScramServerOptions> = {}): ScramServer {
  return new ScramServer({ mechanism, lookup, ...options });
}

async function exchange(scram: ScramServer, client: TestClient) {
  const started = await scram.start(client.first());
  if ('failure' in started) return started;
  return scram.finish(client.final(started.challenge));
}

describe('SCRAM test vectors', () => {
  it('RFC 5802 §5 (SCRAM-SHA-1)', async () => {
    const credentials = deriveScram('pencil', 'sha1', { salt: Buffer.from('QSXCR+Q6sek8bf92', 'base64'), iterations: 4096 });
    const scram = new ScramServer({ mechanism: 'SCRAM-SHA-1', lookup: () => credentials, serverNonce: () => '3rfcNHYJY1ZVvWVs7j' });
    const challenge = challengeOf(await scram.start(Buffer.from('n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL')));
    expect(challenge.toString()).toBe('r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
    const result = scram.finish(Buffer.from('c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='));
    expect(result).toEqual({ success: Buffer.from('v=rmF9pqV8S7suAoZWja4dJRkFsKQ='), username: 'user' });
  });

  it('RFC 7677 §3 (SCRAM-SHA-256)', async () => {
    const credentials = deriveScram('pencil', 'sha256', { salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), iterations: 4096 });
    const scram = new ScramServer({
      mechanism: 'SCRAM-SHA-256',
      lookup: () => credentials,
      serverNonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
    });
    const challenge = challengeOf(await scram.start(Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO')));
    expect(challenge.toString()).toBe('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
    const result = scram.finish(
      Buffer.from('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='),
    );
    expect(result).toEqual({ success: Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), username: 'user' });
  });

  it('the test client reproduces the RFC 7677 client-final message', () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil', nonce: 'rOprNGfwEbeRWgbNEkqO' });
    const final = client.final(Buffer.from('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'));
    expect(final.toString()).toBe(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    expect(client.verify(Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='))).toBe(true);
  });
});

describe('ScramServer exchanges', () => {
  for (const [mechanism, hash] of [
    ['SCRAM-SHA-1', 'sha1'],
    ['SCRAM-SHA-256', 'sha256'],
  ] as const) {
    it(`${mechanism}: a client knowing the password authenticates, and authenticates the server`, async () => {
      const client = new TestClient({ hash, username: 'User', password: 'pencil' });
      const result = await exchange(server(mechanism), client);
      if (!('success' in result)) throw new Error(`failed: ${result.failure}`);
      expect(result.username).toBe('user');
      expect(result.authzid).toBeUndefined();
      expect(client.verify(result.success)).toBe(true);
    });

    it(`${mechanism}: a wrong password is not-authorized`, async () => {
      const result = await exchange(server(mechanism), new TestClient({ hash, username: 'user', password: 'pencil!' }));
      expect(result).toEqual({ failure: 'not-authorized' });
    });
  }

  it('uses random server nonces by default', async () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    const one = challengeOf(await server('SCRAM-SHA-256').start(client.first())).toString();
    const two = challengeOf(await server('SCRAM-SHA-256').start(client.first())).toString();
    expect(one.split(',')[0]).toMatch(/^r=clientnonce0123456789[A-Za-z0-9+/]{24}$/);
    expect(one.split(',')[0]).not.toBe(two.split(',')[0]);
  });

  it('decodes =2C and =3D in usernames and refuses other escapes', async () => {
    const ok = await exchange(server('SCRAM-SHA-256'), new TestClient({ hash: 'sha256', username: 'a,b=c', password: 'escaped' }));
    expect(ok).toMatchObject({ username: 'a,b=c' });
    for (const name of ['a=2Db', 'a=2cb', 'a=', 'a=3', 'a\0b']) {
      const result = await server('SCRAM-SHA-256').start(Buffer.from(`n,,n=${name},r=abc`));
      expect(result, name).toEqual({ failure: 'malformed-request', text: 'invalid username attribute' });
    }
  });

  it('accepts an authzid naming the account and returns it', async () => {
    const plain = await exchange(
      server('SCRAM-SHA-1'),
      new TestClient({ hash: 'sha1', username: 'user', password: 'pencil', gs2Header: 'n,a=USER,' }),
    );
    expect(plain).toMatchObject({ username: 'user', authzid: 'USER' });
    const jid = await exchange(
      server('SCRAM-SHA-1', { domain: 'example.com' }),
      new TestClient({ hash: 'sha1', username: 'user', password: 'pencil', gs2Header: 'n,a=user@Example.com,' }),
    );
    expect(jid).toMatchObject({ username: 'user', authzid: 'user@Example.com' });
  });

  it('refuses an authzid naming anyone else', async () => {
    const cases: [string, Partial<ScramServerOptions>][] = [
      ['n,a=other,', {}],
      ['n,a=user@example.com,', {}],
      ['n,a=user@example.org,', { domain: 'example.com' }],
      ['n,a=user@example.com/phone,', { domain: 'example.com' }],
      ['n,a=other@example.com,', { domain: 'example.com' }],
    ];
    for (const [gs2Header, options] of cases) {
      const client = new TestClient({ hash: 'sha1', username: 'user', password: 'pencil', gs2Header });
      expect(await server('SCRAM-SHA-1', options).start(client.first()), gs2Header).toEqual({ failure: 'invalid-authzid' });
    }
  });

  it('fails every call out of order, and after a failure or success', async () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    expect(server('SCRAM-SHA-256').finish(Buffer.from('c=biws,r=x,p=AAAA'))).toMatchObject({ failure: 'malformed-request' });

    const twice = server('SCRAM-SHA-256');
    challengeOf(await twice.start(client.first()));
    expect(await twice.start(client.first())).toMatchObject({ failure: 'malformed-request' });

    const afterFailure = server('SCRAM-SHA-256');
    expect(await afterFailure.start(Buffer.from('bogus'))).toMatchObject({ failure: 'malformed-request' });
    expect(await afterFailure.start(client.first())).toMatchObject({ failure: 'malformed-request' });

    const replay = server('SCRAM-SHA-256');
    const final = client.final(challengeOf(await replay.start(client.first())));
    expect(replay.finish(final)).toHaveProperty('success');
    expect(replay.finish(final)).toMatchObject({ failure: 'malformed-request' });
  });

  it('offers -PLUS mechanisms only with a channel binding', () => {
    expect(offeredScramMechanisms()).toEqual(['SCRAM-SHA-256', 'SCRAM-SHA-1']);
    expect(offeredScramMechanisms({ type: 'tls-exporter', data: Buffer.alloc(32) })).toEqual([
      'SCRAM-SHA-256-PLUS',
      'SCRAM-SHA-1-PLUS',
      'SCRAM-SHA-256',
      'SCRAM-SHA-1',
    ]);
  });
});

describe('channel binding', () => {
  const binding: ChannelBinding = { type: 'tls-exporter', data: Buffer.from('0123456789abcdef0123456789abcdef') };
  const plusClient = (overrides: { gs2Header?: string; cbData?: Buffer } = {}) =>
    new TestClient({
      hash: 'sha256',
      username: 'user',
      password: 'pencil',
      gs2Header: 'p=tls-exporter,,',
      cbData: binding.data,
      ...overrides,
    });

  it('succeeds when both ends bind to the same tls-exporter data', async () => {
    const client = plusClient();
    const result = await exchange(server('SCRAM-SHA-256-PLUS', { channelBinding: binding }), client);
    if (!('success' in result)) throw new Error(`failed: ${result.failure}`);
    expect(client.verify(result.success)).toBe(true);
  });

  it('succeeds with tls-unique and SCRAM-SHA-1-PLUS, with an authzid in the bound header', async () => {
    const unique: ChannelBinding = { type: 'tls-unique', data: Buffer.from('finished-message') };
    const client = new TestClient({
      hash: 'sha1',
      username: 'user',
      password: 'pencil',
      gs2Header: 'p=tls-unique,a=user,',
      cbData: unique.data,
    });
    expect(await exchange(server('SCRAM-SHA-1-PLUS', { channelBinding: unique }), client)).toMatchObject({ username: 'user' });
  });

  it('fails when the binding data differ (a man in the middle)', async () => {
    const client = plusClient({ cbData: Buffer.from('fedcba9876543210fedcba9876543210') });
    const result = await exchange(server('SCRAM-SHA-256-PLUS', { channelBinding: binding }), client);
    expect(result).toEqual({ failure: 'not-authorized', text: 'channel-bindings-dont-match' });
  });

  it('fails when c= does not repeat the gs2 header', async () => {
    const scram = server('SCRAM-SHA-256', { channelBinding: binding, plusOffered: false });
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    const challenge = challengeOf(await scram.start(client.first()));
    const result = scram.finish(client.final(challenge, { cbind: Buffer.from('y,,').toString('base64') }));
    expect(result).toEqual({ failure: 'not-authorized', text: 'channel-bindings-dont-match' });
  });

  it('fails a binding type other than the connection’s', async () => {
    const client = plusClient({ gs2Header: 'p=tls-unique,,' });
    expect(await server('SCRAM-SHA-256-PLUS', { channelBinding: binding }).start(client.first())).toEqual({
      failure: 'not-authorized',
      text: 'unsupported-channel-binding-type',
    });
  });

  it('requires p= for -PLUS and refuses it otherwise', async () => {
    for (const gs2Header of ['n,,', 'y,,']) {
      const client = plusClient({ gs2Header });
      expect(await server('SCRAM-SHA-256-PLUS', { channelBinding: binding }).start(client.first()), gs2Header).toMatchObject({
        failure: 'malformed-request',
      });
    }
    expect(await server('SCRAM-SHA-256', { channelBinding: binding }).start(plusClient().first())).toMatchObject({
      failure: 'malformed-request',
    });
    expect(() => server('SCRAM-SHA-256-PLUS')).toThrow(TypeError);
  });

  it('detects the y,, downgrade when -PLUS was offered, and allows y,, when it was not', async () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil', gs2Header: 'y,,' });
    expect(await server('SCRAM-SHA-256', { channelBinding: binding }).start(client.first())).toEqual({
      failure: 'not-authorized',
      text: 'server-does-support-channel-binding',
    });
    expect(await server('SCRAM-SHA-256', { plusOffered: true }).start(client.first())).toMatchObject({ failure: 'not-authorized' });
    expect(await exchange(server('SCRAM-SHA-256'), client)).toMatchObject({ username: 'user' });
    expect(await exchange(server('SCRAM-SHA-256', { channelBinding: binding, plusOffered: false }), client)).toMatchObject({
      username: 'user',
    });
  });
});

describe('unknown users', () => {
  const fields = (challenge: Buffer) =>
    new Map(
      challenge
        .toString()
        .split(',')
        .map((field) => [field.slice(0, 2), field.slice(2)]),
    );

  it('get a challenge shaped like a real account’s, stable per name, and fail like a wrong password', async () => {
    const known = fields(
      challengeOf(await server('SCRAM-SHA-256').start(new TestClient({ hash: 'sha256', username: 'user', password: 'x' }).first())),
    );
    const ghost = new TestClient({ hash: 'sha256', username: 'ghost', password: 'pencil' });
    const first = fields(challengeOf(await server('SCRAM-SHA-256').start(ghost.first())));
    const again = fields(
      challengeOf(await server('SCRAM-SHA-256').start(new TestClient({ hash: 'sha256', username: 'GHOST', password: 'x' }).first())),
    );
    const other = fields(
      challengeOf(await server('SCRAM-SHA-256').start(new TestClient({ hash: 'sha256', username: 'spook', password: 'x' }).first())),
    );

    expect([...first.keys()]).toEqual([...known.keys()]);
    expect(Buffer.from(first.get('s=') ?? '', 'base64')).toHaveLength(Buffer.from(known.get('s=') ?? '', 'base64').length);
    expect(first.get('i=')).toBe(known.get('i='));
    expect(again.get('s=')).toBe(first.get('s='));
    expect(other.get('s=')).not.toBe(first.get('s='));

    const unknown = await exchange(server('SCRAM-SHA-256'), ghost);
    const wrong = await exchange(server('SCRAM-SHA-256'), new TestClient({ hash: 'sha256', username: 'user', password: 'wrong' }));
    expect(unknown).toEqual({ failure: 'not-authorized' });
    expect(unknown).toEqual(wrong);
  });

  it('take their iteration count and salt key from the options', async () => {
    const client = new TestClient({ hash: 'sha1', username: 'ghost', password: 'x' });
    const a = fields(
      challengeOf(await server('SCRAM-SHA-1', { unknownUser: { iterations: 10000, secret: Buffer.from('a') } }).start(client.first())),
    );
    const b = fields(
      challengeOf(await server('SCRAM-SHA-1', { unknownUser: { iterations: 10000, secret: Buffer.from('b') } }).start(client.first())),
    );
    const a2 = fields(challengeOf(await server('SCRAM-SHA-1', { unknownUser: { secret: Buffer.from('a') } }).start(client.first())));
    expect(a.get('i=')).toBe('10000');
    expect(a2.get('i=')).toBe('4096');
    expect(a.get('s=')).not.toBe(b.get('s='));
    expect(a.get('s=')).toBe(a2.get('s='));
  });

  it('cannot authenticate even with a proof computed from the fake salt', async () => {
    // The proof is right for *some* password over the fake salt; there is no StoredKey to match it.
    const result = await exchange(server('SCRAM-SHA-1'), new TestClient({ hash: 'sha1', username: 'nobody', password: '' }));
    expect(result).toEqual({ failure: 'not-authorized' });
  });
});

describe('malformed SCRAM messages', () => {
  it('fail the client-first message with the right condition', async () => {
    const cases: [string | Buffer, string, string?][] = [
      ['', 'malformed-request'],
      ['x,,n=user,r=abc', 'malformed-request'],
      ['n,n=user,r=abc', 'malformed-request'],
      ['n,,', 'malformed-request'],
      ['n,,n=user', 'malformed-request'],
      ['n,,r=abc,n=user', 'malformed-request'],
      ['n,,n=,r=abc', 'malformed-request'],
      ['n,,n=user,r=', 'malformed-request'],
      ['n,,n=user,r=ab\x7fc', 'malformed-request'],
      ['n,,n=user,r=abc,x=unknown', 'malformed-request'],
      ['n,,m=ext,n=user,r=abc', 'malformed-request', 'mandatory extensions are not supported'],
      ['n,,n=user,r=abc,m=ext', 'malformed-request', 'unsupported attribute'],
      ['p=tls exporter,,n=user,r=abc', 'malformed-request'],
      ['p=,,n=user,r=abc', 'malformed-request'],
      ['n,a=,n=user,r=abc', 'malformed-request'],
      ['n,a=user', 'malformed-request'],
      ['n,b=user,n=user,r=abc', 'malformed-request'],
      ['N,,n=user,r=abc', 'malformed-request'],
      ['\ufeffn,,n=user,r=abc', 'malformed-request'],
      [Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xc3, 0x28, 0x2c, 0x72, 0x3d, 0x61]), 'malformed-request'],
      [`n,,n=user,r=${'a'.repeat(20000)}`, 'malformed-request'],
      ['n,,n=us@er,r=abc', 'not-authorized'],
    ];
    for (const [message, failure, text] of cases) {
      const result = await server('SCRAM-SHA-256').start(Buffer.isBuffer(message) ? message : Buffer.from(message));
      expect(result, JSON.stringify(message.toString().slice(0, 40))).toMatchObject(text === undefined ? { failure } : { failure, text });
    }
  });

  it('fail the client-final message with the right condition', async () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    const nonce = `${client.nonce}SERVER`;
    const proof = Buffer.alloc(32).toString('base64');
    const cases: [string, string][] = [
      ['', 'malformed-request'],
      [`c=biws,r=${nonce}`, 'malformed-request'],
      [`r=${nonce},c=biws,p=${proof}`, 'malformed-request'],
      [`c=biws,r=${nonce},x=1,p=${proof}`, 'malformed-request'],
      [`c=biws,r=${nonce},p=${proof},x=1`, 'malformed-request'],
      [`c=biws,r=${nonce},p=${Buffer.alloc(20).toString('base64')}`, 'malformed-request'],
      [`c=bi!s,r=${nonce},p=${proof}`, 'incorrect-encoding'],
      [`c=biws,r=${nonce},p=${proof.slice(0, -1)}`, 'incorrect-encoding'],
      [`c=biws,r=${nonce},p= ${proof}`, 'incorrect-encoding'],
      [`c=bx==,r=${nonce},p=${proof}`, 'incorrect-encoding'],
      [`c=biws,r=${client.nonce}OTHER,p=${proof}`, 'not-authorized'],
      [`c=biws,r=${client.nonce},p=${proof}`, 'not-authorized'],
      [`c=biws,r=${nonce},p=${proof}`, 'not-authorized'],
    ];
    for (const [message, failure] of cases) {
      const scram = server('SCRAM-SHA-256', { serverNonce: () => 'SERVER' });
      challengeOf(await scram.start(client.first()));
      expect(scram.finish(Buffer.from(message)), message).toMatchObject({ failure });
    }
  });

  it('a tampered nonce is refused even with an otherwise valid proof', async () => {
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    const scram = server('SCRAM-SHA-256');
    const challenge = challengeOf(await scram.start(client.first()));
    expect(scram.finish(client.final(challenge, { nonce: `${client.nonce}forged` }))).toEqual({
      failure: 'not-authorized',
      text: 'nonce mismatch',
    });
  });

  it('random bytes never throw and always fail, in either message', async () => {
    const client = new TestClient({ hash: 'sha1', username: 'user', password: 'pencil' });
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const result = await server('SCRAM-SHA-1').start(Buffer.from(bytes));
        expect('failure' in result && isSaslFailure(result.failure)).toBe(true);
        const scram = server('SCRAM-SHA-1');
        challengeOf(await scram.start(client.first()));
        const final = scram.finish(Buffer.from(bytes));
        expect('failure' in final && isSaslFailure(final.failure)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('SCRAM-shaped garbage never throws; the client-final never succeeds', async () => {
    const tokens = [
      'n',
      'y',
      'p=',
      'tls-exporter',
      ',',
      ',',
      ',',
      'a=',
      'n=',
      'r=',
      'c=',
      'p=',
      'm=',
      'x=',
      'user',
      'USER',
      '=2C',
      '=3D',
      '=',
      'biws',
      'abc',
      '\0',
      'é',
      '@',
      '/',
    ];
    const garbage = fc.array(fc.constantFrom(...tokens), { maxLength: 24 }).map((parts) => Buffer.from(parts.join('')));
    const client = new TestClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    await fc.assert(
      fc.asyncProperty(garbage, async (message) => {
        const result = await server('SCRAM-SHA-256', { channelBinding: { type: 'tls-exporter', data: Buffer.alloc(32) } }).start(message);
        expect('challenge' in result !== 'failure' in result).toBe(true);
        const scram = server('SCRAM-SHA-256');
        challengeOf(await scram.start(client.first()));
        expect(scram.finish(message)).toHaveProperty('failure');
      }),
      { numRuns: 300 },
    );
  });
});

describe('verifyPlain', () => {
  const plain = (...parts: string[]) => Buffer.from(parts.join('\0'));

  it('accepts the right password, with or without an authzid', async () => {
    expect(await verifyPlain(plain('', 'user', 'pencil'), lookup)).toEqual({ username: 'user' });
    expect(await verifyPlain(plain('User', 'USER', 'pencil'), lookup)).toEqual({ username: 'user', authzid: 'User' });
    expect(await verifyPlain(plain('user@example.com', 'user', 'pencil'), lookup, { domain: 'example.com' })).toEqual({
      username: 'user',
      authzid: 'user@example.com',
    });
    expect(await verifyPlain(plain('', 'user', 'pencil'), lookup, { hash: 'sha1' })).toEqual({ username: 'user' });
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    const wrong = await verifyPlain(plain('', 'user', 'Pencil'), lookup);
    const unknown = await verifyPlain(plain('', 'ghost', 'pencil'), lookup);
    expect(wrong).toEqual({ failure: 'not-authorized' });
    expect(unknown).toEqual(wrong);
  });

  it('refuses empty passwords and malformed messages', async () => {
    expect(await verifyPlain(plain('', 'user', ''), lookup)).toMatchObject({ failure: 'malformed-request' });
    expect(await verifyPlain(plain('', '', 'pencil'), lookup)).toMatchObject({ failure: 'malformed-request' });
    expect(await verifyPlain(Buffer.from('user\0pencil'), lookup)).toMatchObject({ failure: 'malformed-request' });
    expect(await verifyPlain(plain('', 'user', 'pen', 'cil'), lookup)).toMatchObject({ failure: 'malformed-request' });
    expect(await verifyPlain(Buffer.from([0, 0x75, 0, 0xff]), lookup)).toMatchObject({ failure: 'malformed-request' });
    expect(await verifyPlain(Buffer.alloc(0), lookup)).toMatchObject({ failure: 'malformed-request' });
  });

  it('refuses an authzid naming someone else', async () => {
    expect(await verifyPlain(plain('admin', 'user', 'pencil'), lookup)).toEqual({ failure: 'invalid-authzid' });
    expect(await verifyPlain(plain('user@example.com', 'user', 'pencil'), lookup)).toEqual({ failure: 'invalid-authzid' });
  });

  it('prepares passwords with SASLprep on both sides', async () => {
    const prepStore = new MemoryUserStore();
    prepStore.create('spacey', 'pen\u00a0cil\u00ad');
    expect(await verifyPlain(plain('', 'spacey', 'pen cil'), scramLookup(prepStore))).toEqual({ username: 'spacey' });
    expect(await verifyPlain(plain('', 'spacey', 'pen\u0007cil'), scramLookup(prepStore))).toEqual({ failure: 'not-authorized' });
  });

  it('random bytes never throw and never authenticate', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), async (bytes) => {
        expect(await verifyPlain(Buffer.from(bytes), lookup, { unknownUser: { iterations: 1 } })).toHaveProperty('failure');
      }),
      { numRuns: 200 },
    );
  });

  it('reports unusable stored credentials as a temporary failure', async () => {
    const broken: CredentialsLookup = () => ({
      salt: Buffer.alloc(16),
      iterations: 4096,
      storedKey: Buffer.alloc(3),
      serverKey: Buffer.alloc(3),
    });
    expect(await verifyPlain(plain('', 'user', 'pencil'), broken)).toEqual({ failure: 'temporary-auth-failure' });
    expect(await new ScramServer({ mechanism: 'SCRAM-SHA-1', lookup: broken }).start(Buffer.from('n,,n=user,r=abc'))).toEqual({
      failure: 'temporary-auth-failure',
    });
  });
});

describe('credentials and MemoryUserStore', () => {
  it('derives the keys of RFC 5802 §3', () => {
    const salt = Buffer.from('0123456789abcdef');
    const credentials = deriveScram('pass\u2168word', 'sha256', { salt, iterations: 100 });
    // Normalize(): SASLprep turns U+2168 ROMAN NUMERAL NINE into "IX".
    const salted = pbkdf2Sync('passIXword', salt, 100, 32, 'sha256');
    expect(credentials.iterations).toBe(100);
    expect(credentials.salt).toEqual(salt);
    expect(credentials.storedKey).toEqual(
      createHash('sha256')
        .update(hmac('sha256', salted, 'Client Key'))
        .digest(),
    );
    expect(credentials.serverKey).toEqual(hmac('sha256', salted, 'Server Key'));
    expect(deriveScram('x', 'sha1').salt).toHaveLength(16);
    expect(deriveScram('x', 'sha1').salt).not.toEqual(deriveScram('x', 'sha1').salt);
    expect(() => deriveScram('', 'sha1')).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_CREDENTIALS' }));
    expect(() => deriveScram('a\u0000b', 'sha1')).toThrow(/prohibited/);
    expect(() => deriveScram('x', 'sha1', { iterations: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_CREDENTIALS' }));
  });

  it('never holds the plain password', () => {
    const password = 'correct horse battery staple';
    const users = new Map<string, StoredUser>();
    const memory = new MemoryUserStore({ users });
    expect(memory.create('Alice', password)).toBe(true);

    const found: string[] = [];
    const visit = (value: unknown, path: string): void => {
      if (typeof value === 'string') {
        if (value.includes(password) || value.includes(Buffer.from(password).toString('base64'))) found.push(path);
      } else if (Buffer.isBuffer(value)) {
        if (value.includes(password) || value.includes(Buffer.from(password, 'utf16le'))) found.push(path);
      } else if (value instanceof Map) {
        for (const [key, item] of value) visit(item, `${path}.get(${String(key)})`);
      } else if (typeof value === 'object' && value !== null) {
        for (const [key, item] of Object.entries(value)) {
          if (/pass/i.test(key)) found.push(`${path}.${key}`);
          visit(item, `${path}.${key}`);
        }
      }
    };
    visit(users, 'users');
    expect(found).toEqual([]);
    const stored = users.get('alice');
    expect(Object.keys(stored ?? {}).sort()).toEqual(['sha1', 'sha256', 'username']);
    expect(Object.keys(stored?.sha256 ?? {}).sort()).toEqual(['iterations', 'salt', 'serverKey', 'storedKey']);
    expect(stored?.sha1.storedKey).toHaveLength(20);
    expect(stored?.sha256.storedKey).toHaveLength(32);
  });

  it('compares usernames lowercased and manages accounts', () => {
    const memory = new MemoryUserStore({ iterations: 64 });
    expect(memory.create('Bob', 'one')).toBe(true);
    expect(memory.create('BOB', 'two')).toBe(false);
    expect(memory.get('bOb')?.username).toBe('bob');
    expect(memory.get('bob')?.sha1.iterations).toBe(64);

    const before = memory.get('bob') as StoredUser;
    before.sha256.storedKey.fill(0);
    expect(memory.get('bob')?.sha256.storedKey).not.toEqual(before.sha256.storedKey);

    const old = memory.get('bob')?.sha256.storedKey;
    expect(memory.setPassword('BOB', 'three')).toBe(true);
    expect(memory.get('bob')?.sha256.storedKey).not.toEqual(old);
    expect(memory.setPassword('carol', 'x')).toBe(false);

    expect(memory.delete('Bob')).toBe(true);
    expect(memory.delete('bob')).toBe(false);
    expect(memory.get('bob')).toBeUndefined();
    expect(memory.size).toBe(0);

    for (const bad of ['', 'a@b', 'a b', 'a/b', 'x\u0007'])
      expect(() => memory.create(bad, 'pw'), bad).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_CREDENTIALS' }));
    expect(() => memory.create('dave', '')).toThrow(/empty password/);
  });

  it('works with an asynchronous store through scramLookup', async () => {
    const credentials = deriveScram('pencil', 'sha1', { iterations: 16 });
    const asyncStore = {
      get: async (username: string) => (username === 'user' ? { username, sha1: credentials, sha256: credentials } : undefined),
      create: async () => false,
      setPassword: async () => false,
      delete: async () => false,
    };
    const result = await exchange(
      new ScramServer({ mechanism: 'SCRAM-SHA-1', lookup: scramLookup(asyncStore) }),
      new TestClient({ hash: 'sha1', username: 'user', password: 'pencil' }),
    );
    expect(result).toMatchObject({ username: 'user' });
  });
});

describe('saslprep (RFC 4013 §3 examples and more)', () => {
  it('maps, normalizes and checks', () => {
    expect(saslprep('I\u00adX')).toBe('IX');
    expect(saslprep('user')).toBe('user');
    expect(saslprep('USER')).toBe('USER');
    expect(saslprep('\u00aa')).toBe('a');
    expect(saslprep('\u2168')).toBe('IX');
    expect(saslprep('a\u2003b')).toBe('a b');
    expect(saslprep('\u200b')).toBe(' ');
    expect(saslprep('\u05d0\u05d1')).toBe('\u05d0\u05d1');
    expect(saslprep('\u{2f868}')).toBe('\u{2136a}');
    expect(() => saslprep('\u0007')).toThrow(/prohibited/);
    expect(() => saslprep('\u0627\u0031')).toThrow(/neither starting nor ending/);
    expect(() => saslprep('\u05d0a\u05d1')).toThrow(/both/);
    expect(() => saslprep('\ue000')).toThrow(/prohibited/);
    expect(() => saslprep('\ud800')).toThrow(/prohibited/);
    expect(() => saslprep('\u{e0041}')).toThrow(/prohibited/);
    expect(() => saslprep('\u0221')).toThrow(/unassigned/);
    expect(saslprep('\u0221', { allowUnassigned: true })).toBe('\u0221');
  });
});

describe('SASL payload encoding', () => {
  it('decodes strictly', () => {
    expect(decodeSaslPayload('=')).toEqual(Buffer.alloc(0));
    expect(decodeSaslPayload('biws')).toEqual(Buffer.from('n,,'));
    for (const bad of ['', 'biw', 'bi ws', 'biws\n', 'bx==', 'b===', 'biws=', '*iws']) expect(decodeSaslPayload(bad), bad).toBeUndefined();
    expect(encodeSaslPayload(Buffer.alloc(0))).toBe('=');
    expect(encodeSaslPayload(Buffer.from('n,,'))).toBe('biws');
  });
});

describe('LoginThrottle', () => {
  const MINUTE = 60_000;
  function throttle(options: { maxKeys?: number; maxFailures?: number; maxAccountFailures?: number } = {}) {
    const clock = { now: 0 };
    return { clock, throttle: new LoginThrottle({ now: () => clock.now, ...options }) };
  }

  it('locks out after 5 failures within 5 minutes, for a doubling delay capped at 15 minutes', () => {
    const { clock, throttle: t } = throttle();
    for (let i = 0; i < 4; i++) {
      t.failed('192.0.2.1', 'user');
      expect(t.check('192.0.2.1', 'user')).toEqual({ allowed: true });
      clock.now += 1000;
    }
    t.failed('192.0.2.1', 'user');
    expect(t.check('192.0.2.1', 'user')).toEqual({ allowed: false, retryAfterMs: MINUTE });
    clock.now += MINUTE - 1;
    expect(t.check('192.0.2.1', 'user')).toEqual({ allowed: false, retryAfterMs: 1 });
    clock.now += 1;
    expect(t.check('192.0.2.1', 'user')).toEqual({ allowed: true });

    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      t.failed('192.0.2.1', 'user');
      const decision = t.check('192.0.2.1', 'user');
      delays.push(decision.allowed ? 0 : decision.retryAfterMs);
      clock.now += decision.allowed ? 0 : decision.retryAfterMs;
    }
    expect(delays).toEqual([2, 4, 8, 15, 15, 15].map((m) => m * MINUTE));
  });

  it('forgets after a quiet window, and counts only failures within the window', () => {
    const { clock, throttle: t } = throttle();
    for (let i = 0; i < 5; i++) t.failed('192.0.2.1', 'user');
    clock.now += MINUTE + 5 * MINUTE - 1;
    expect(t.check('192.0.2.1', 'user')).toEqual({ allowed: true });
    t.failed('192.0.2.1', 'user');
    expect(t.check('192.0.2.1', 'user'), 'not yet forgotten: the lockout doubles').toEqual({ allowed: false, retryAfterMs: 2 * MINUTE });
    clock.now += 2 * MINUTE + 5 * MINUTE;
    t.failed('192.0.2.1', 'user');
    expect(t.check('192.0.2.1', 'user'), 'forgotten').toEqual({ allowed: true });

    const spread = throttle();
    for (let i = 0; i < 10; i++) {
      spread.throttle.failed('198.51.100.7', 'bob');
      expect(spread.throttle.check('198.51.100.7', 'bob'), `failure ${i}`).toEqual({ allowed: true });
      spread.clock.now += 2 * MINUTE;
    }
  });

  it('locks the (address, account) pair, never the address for other accounts; the account after more failures from anywhere', () => {
    const { throttle: t } = throttle();
    for (let i = 0; i < 5; i++) t.failed('192.0.2.1', 'victim');
    expect(t.check('192.0.2.1', 'victim')).toMatchObject({ allowed: false });
    expect(t.check('192.0.2.1', 'someone'), 'another account from the same address').toEqual({ allowed: true });
    expect(t.check('192.0.2.2', 'victim'), 'the same account from another address').toEqual({ allowed: true });
    for (let i = 0; i < 5; i++) t.failed('192.0.2.1', `other${i}`);
    expect(t.check('192.0.2.1', 'someone'), 'spraying accounts does not lock the address').toEqual({ allowed: true });

    // Distributed guessing: 20 failures against one account from 20 addresses lock the account.
    for (let i = 0; i < 19; i++) t.failed(`203.0.113.${i}`, 'Target');
    expect(t.check('203.0.113.99', 'target')).toEqual({ allowed: true });
    t.failed('203.0.113.19', 'target');
    expect(t.check('203.0.113.99', 'target')).toMatchObject({ allowed: false });
    expect(t.check('203.0.113.99', 'other')).toEqual({ allowed: true });
  });

  it('groups IPv6 addresses by /64 and IPv4-mapped addresses with IPv4', () => {
    expect(networkOf('2001:db8:0:1::1')).toBe('2001:db8:0:1::/64');
    expect(networkOf('2001:0db8:0000:0001:ffff:ffff:ffff:ffff')).toBe('2001:db8:0:1::/64');
    expect(networkOf('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(networkOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(networkOf('::1')).toBe('0:0:0:0::/64');
    expect(networkOf('64:ff9b:1::192.0.2.1')).toBe('64:ff9b:1:0::/64');
    expect(networkOf('/run/xmpp.sock')).toBe('/run/xmpp.sock');

    const { throttle: t } = throttle();
    for (let i = 0; i < 5; i++) t.failed(`2001:db8::${i}`, 'user');
    expect(t.check('2001:db8::ffff', 'user')).toMatchObject({ allowed: false });
    expect(t.check('2001:db8:0:1::1', 'user')).toEqual({ allowed: true });
  });

  it("clears the pair's history on success, not the account's", () => {
    const { throttle: t } = throttle({ maxFailures: 5, maxAccountFailures: 6 });
    for (let i = 0; i < 4; i++) t.failed('192.0.2.1', 'user');
    t.succeeded('192.0.2.1', 'user');
    t.failed('192.0.2.1', 'user');
    expect(t.check('192.0.2.1', 'user'), 'the pair starts over').toEqual({ allowed: true });
    t.failed('192.0.2.9', 'user');
    expect(t.check('192.0.2.1', 'user'), 'the account has 6 failures').toMatchObject({ allowed: false });
  });

  it('tracks a bounded number of keys, evicting the oldest', () => {
    const { throttle: t } = throttle({ maxKeys: 3, maxFailures: 1 });
    t.failed('10.0.0.1');
    expect(t.check('10.0.0.1')).toMatchObject({ allowed: false });
    for (let i = 2; i <= 50; i++) t.failed(`10.0.0.${i}`);
    expect(t.size).toBe(3);
    expect(t.check('10.0.0.1')).toEqual({ allowed: true });
    expect(t.check('10.0.0.50')).toMatchObject({ allowed: false });
  });
});
