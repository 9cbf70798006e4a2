import { createHash, randomBytes } from 'node:crypto';
import { hashLength, hmac, normalizeUsername, type ScramCredentials, type ScramHash } from './credentials.js';
import type { SaslFailure, SaslFailureResult } from './failures.js';
import {
  authzidMatches,
  type CredentialsLookup,
  decodeBase64,
  decodeUtf8,
  fakeCredentials,
  MAX_MESSAGE_BYTES,
  safeEqual,
  type UnknownUserOptions,
  validCredentials,
} from './util.js';

// The server side of SCRAM (RFC 5802) with SHA-1 and SHA-256 (RFC 7677), with and without channel
// binding (-PLUS; `tls-unique` of RFC 5929, `tls-exporter` of RFC 9266). Messages are the decoded
// SASL payloads; the XMPP layer base64-codes them (see decodeSaslPayload) and wraps them in
// <challenge/>, <success/> and <failure/>.

export type ScramMechanism = 'SCRAM-SHA-1' | 'SCRAM-SHA-1-PLUS' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
export type ChannelBindingType = 'tls-exporter' | 'tls-unique';

/**
 * The channel binding of the connection. For TLS 1.3 only `tls-exporter` is defined (RFC 9266):
 * `tlsSocket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0))`. For TLS 1.2,
 * `tls-unique` is `tlsSocket.getFinished()` (the server's own Finished message when the session was
 * resumed, `getPeerFinished()` otherwise; RFC 5929 §3.1), and is unsafe without the extended master
 * secret extension (RFC 7627). Choosing the type, and offering it, is the caller's business.
 */
export interface ChannelBinding {
  type: ChannelBindingType;
  data: Buffer;
}

export interface ScramServerOptions {
  mechanism: ScramMechanism;
  /** Credentials of a normalized username for the mechanism's hash; undefined for no such account. */
  lookup: CredentialsLookup;
  /** The connection's channel binding. Required for -PLUS mechanisms. */
  channelBinding?: ChannelBinding;
  /**
   * Whether -PLUS mechanisms were offered on this connection. A client that could bind but believes
   * the server cannot (`y` flag) then reveals a downgrade, and fails. Default: whether
   * `channelBinding` is given, as {@link offeredScramMechanisms} offers them.
   */
  plusOffered?: boolean;
  /** The domain the stream is addressed to: authzids of the form `user@domain` are accepted only for it. */
  domain?: string;
  /** How unknown usernames are disguised. */
  unknownUser?: UnknownUserOptions;
  /** The server part of the nonce: printable ASCII without `,`. Default: 18 random bytes, base64. For tests. */
  serverNonce?: () => string;
}

export type ScramStartResult = { challenge: Buffer } | SaslFailureResult;

export type ScramFinishResult =
  | {
      /** The server-final message (`v=` ServerSignature), to send in `<success/>`. */
      success: Buffer;
      /** The authenticated account, normalized. */
      username: string;
      /** The authorization identity the client asked for, if any; it names `username` (see ScramServer). */
      authzid?: string;
    }
  | SaslFailureResult;

/** SCRAM mechanism names, strongest first. */
export const scramMechanisms: readonly ScramMechanism[] = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1'];

/** The SCRAM mechanisms to offer on a connection: the -PLUS variants only when it has a channel binding. */
export function offeredScramMechanisms(channelBinding?: ChannelBinding): ScramMechanism[] {
  return scramMechanisms.filter((mechanism) => channelBinding !== undefined || !mechanism.endsWith('-PLUS'));
}

/** The hash a SCRAM mechanism uses. */
export function scramHash(mechanism: ScramMechanism): ScramHash {
  return mechanism.startsWith('SCRAM-SHA-256') ? 'sha256' : 'sha1';
}

const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const CB_NAME = /^[A-Za-z0-9.-]+$/;

interface Exchange {
  username: string;
  authzid: string | undefined;
  gs2Header: string;
  channelBound: boolean;
  clientFirstBare: string;
  serverFirst: string;
  nonce: string;
  credentials: ScramCredentials;
  known: boolean;
}

/**
 * One SCRAM authentication, server side: `start()` with the client-first message, send the
 * challenge, `finish()` with the client-final message, send the success or failure. Create one per
 * attempt. Every malformed input yields a failure, never an exception; after a failure, or out of
 * order, every call fails.
 *
 * Enforced:
 * - gs2 header (RFC 5802 §6, §7): `n` (no channel binding) and `y` (client could bind, thinks the
 *   server cannot; refused when -PLUS was offered: a downgrade) only for the plain mechanisms,
 *   `p=<type>` only for -PLUS, and only with the connection's binding type; `c=` must carry the
 *   gs2 header, plus the binding data for `p`.
 * - authzid (`a=`): accepted only if it names the authenticated account (the localpart itself, or
 *   `localpart@domain` when `domain` is set), else `invalid-authzid`. Returned in the result.
 * - Usernames and authzids: `=2C` and `=3D` escapes only; SASLprep then {@link normalizeUsername}.
 * - Attributes: exactly those of RFC 5802 in their order. A mandatory extension (`m=`) or any
 *   extension attribute is refused with `malformed-request` (stricter than the ABNF, which lets
 *   extensions through; none is defined).
 * - Unknown usernames get a challenge like a real account's (a stable salt derived from the name,
 *   the usual iteration count) and fail at the proof with `not-authorized`, as a wrong password
 *   does. Proofs are compared with crypto.timingSafeEqual.
 *
 * Failures: `malformed-request` for syntax (including invalid UTF-8 and oversized messages),
 * `incorrect-encoding` for bad base64 in `c=` or `p=`, `invalid-authzid`, `not-authorized` for a
 * wrong proof, an unknown user, a nonce or channel binding mismatch, a binding type other than the
 * connection's, a detected downgrade and an invalid username; `temporary-auth-failure` when the
 * lookup returns unusable credentials. A lookup that throws makes `start()` reject.
 */
export class ScramServer {
  readonly mechanism: ScramMechanism;
  readonly hash: ScramHash;
  readonly #plus: boolean;
  readonly #options: ScramServerOptions;
  readonly #plusOffered: boolean;
  #state: 'initial' | 'challenged' | 'done' = 'initial';
  #exchange: Exchange | undefined;

  constructor(options: ScramServerOptions) {
    this.mechanism = options.mechanism;
    this.hash = scramHash(options.mechanism);
    this.#plus = options.mechanism.endsWith('-PLUS');
    this.#options = options;
    this.#plusOffered = options.plusOffered ?? options.channelBinding !== undefined;
    if (this.#plus && options.channelBinding === undefined) throw new TypeError(`${options.mechanism} needs a channel binding`);
  }

  /** Takes the client-first message; answers the server-first message as the challenge, or a failure. */
  async start(clientFirst: Buffer): Promise<ScramStartResult> {
    if (this.#state !== 'initial') return this.#fail('malformed-request', 'unexpected client-first message');
    this.#state = 'done';
    const text = clientFirst.length <= MAX_MESSAGE_BYTES ? decodeUtf8(clientFirst) : undefined;
    if (text === undefined) return this.#fail('malformed-request', 'invalid client-first message');

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let flag: 'n' | 'y' | 'p';
    let cbName: string | undefined;
    let at: number;
    if (text.startsWith('n,') || text.startsWith('y,')) {
      flag = text.startsWith('n') ? 'n' : 'y';
      at = 2;
    } else if (text.startsWith('p=')) {
      flag = 'p';
      const comma = text.indexOf(',', 2);
      cbName = comma === -1 ? '' : text.slice(2, comma);
      if (!CB_NAME.test(cbName)) return this.#fail('malformed-request', 'invalid channel binding flag');
      at = comma + 1;
    } else {
      return this.#fail('malformed-request', 'invalid channel binding flag');
    }
    let authzid: string | undefined;
    if (text.startsWith('a=', at)) {
      const comma = text.indexOf(',', at);
      authzid = comma === -1 ? undefined : decodeSaslname(text.slice(at + 2, comma));
      if (authzid === undefined) return this.#fail('malformed-request', 'invalid authzid');
      at = comma + 1;
    } else if (text[at] === ',') {
      at += 1;
    } else {
      return this.#fail('malformed-request', 'invalid gs2 header');
    }
    const gs2Header = text.slice(0, at);
    const clientFirstBare = text.slice(at);

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    const [userField = '', nonceField = '', ...extensions] = clientFirstBare.split(',');
    if (userField.startsWith('m=')) return this.#fail('malformed-request', 'mandatory extensions are not supported');
    const rawUsername = userField.startsWith('n=') ? decodeSaslname(userField.slice(2)) : undefined;
    if (rawUsername === undefined) return this.#fail('malformed-request', 'invalid username attribute');
    const clientNonce = nonceField.startsWith('r=') ? nonceField.slice(2) : '';
    if (!PRINTABLE.test(clientNonce)) return this.#fail('malformed-request', 'invalid nonce attribute');
    if (extensions.length > 0) return this.#fail('malformed-request', 'unsupported attribute');

    // Channel binding negotiation (RFC 5802 §6).
    const binding = this.#options.channelBinding;
    if (this.#plus) {
      if (flag !== 'p') return this.#fail('malformed-request', `${this.mechanism} requires channel binding`);
      if (cbName !== binding?.type) return this.#fail('not-authorized', 'unsupported-channel-binding-type');
    } else {
      if (flag === 'p') return this.#fail('malformed-request', 'channel binding requires a -PLUS mechanism');
      if (flag === 'y' && this.#plusOffered) return this.#fail('not-authorized', 'server-does-support-channel-binding');
    }

    const username = normalizeUsername(rawUsername);
    if (username === undefined) return this.#fail('not-authorized', 'invalid username');
    if (authzid !== undefined && !authzidMatches(authzid, username, this.#options.domain)) return this.#fail('invalid-authzid');

    const serverNonce = this.#options.serverNonce?.() ?? randomBytes(18).toString('base64');
    if (!PRINTABLE.test(serverNonce)) throw new TypeError('serverNonce() must return printable ASCII without ","');

    const found = await this.#options.lookup(username, this.hash);
    if (found !== undefined && !validCredentials(found, this.hash)) return this.#fail('temporary-auth-failure');
    const credentials = found ?? fakeCredentials(username, this.hash, this.#options.unknownUser);

    const nonce = clientNonce + serverNonce;
    const serverFirst = `r=${nonce},s=${credentials.salt.toString('base64')},i=${credentials.iterations}`;
    this.#exchange = {
      username,
      authzid,
      gs2Header,
      channelBound: flag === 'p',
      clientFirstBare,
      serverFirst,
      nonce,
      credentials,
      known: found !== undefined,
    };
    this.#state = 'challenged';
    return { challenge: Buffer.from(serverFirst) };
  }

  /** Takes the client-final message; answers the server-final message and the account, or a failure. */
  finish(clientFinal: Buffer): ScramFinishResult {
    const exchange = this.#exchange;
    if (this.#state !== 'challenged' || exchange === undefined) return this.#fail('malformed-request', 'unexpected client-final message');
    this.#state = 'done';
    this.#exchange = undefined;
    const text = clientFinal.length <= MAX_MESSAGE_BYTES ? decodeUtf8(clientFinal) : undefined;
    if (text === undefined) return this.#fail('malformed-request', 'invalid client-final message');

    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const fields = text.split(',');
    const [bindingField = '', nonceField = ''] = fields;
    const proofField = fields.length >= 3 ? (fields[fields.length - 1] ?? '') : '';
    if (!bindingField.startsWith('c=')) return this.#fail('malformed-request', 'invalid channel binding attribute');
    if (!nonceField.startsWith('r=')) return this.#fail('malformed-request', 'invalid nonce attribute');
    if (!proofField.startsWith('p=')) return this.#fail('malformed-request', 'invalid proof attribute');
    if (fields.length > 3) return this.#fail('malformed-request', 'unsupported attribute');
    const cbind = decodeBase64(bindingField.slice(2));
    const proof = decodeBase64(proofField.slice(2));
    if (cbind === undefined || proof === undefined) return this.#fail('incorrect-encoding');
    if (proof.length !== hashLength[this.hash]) return this.#fail('malformed-request', 'invalid proof length');
    if (nonceField.slice(2) !== exchange.nonce) return this.#fail('not-authorized', 'nonce mismatch');

    const header = Buffer.from(exchange.gs2Header);
    const expected = exchange.channelBound ? Buffer.concat([header, this.#options.channelBinding?.data ?? Buffer.alloc(0)]) : header;
    if (!safeEqual(cbind, expected)) return this.#fail('not-authorized', 'channel-bindings-dont-match');

    const { credentials } = exchange;
    const authMessage = `${exchange.clientFirstBare},${exchange.serverFirst},${fields.slice(0, -1).join(',')}`;
    const clientSignature = hmac(this.hash, credentials.storedKey, authMessage);
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = (proof[i] ?? 0) ^ (clientSignature[i] ?? 0);
    const matches = safeEqual(createHash(this.hash).update(clientKey).digest(), credentials.storedKey);
    if (!matches || !exchange.known) return this.#fail('not-authorized');

    const serverSignature = hmac(this.hash, credentials.serverKey, authMessage);
    const success = Buffer.from(`v=${serverSignature.toString('base64')}`);
    const { username, authzid } = exchange;
    return authzid === undefined ? { success, username } : { success, username, authzid };
  }

  #fail(failure: SaslFailure, text?: string): SaslFailureResult {
    this.#state = 'done';
    this.#exchange = undefined;
    return text === undefined ? { failure } : { failure, text };
  }
}

/** Decodes a saslname (RFC 5802 §7): non-empty, no NUL, `=` only in `=2C` (`,`) and `=3D` (`=`). */
function decodeSaslname(raw: string): string | undefined {
  if (raw === '' || raw.includes('\0') || /=(?!2C|3D)/.test(raw)) return undefined;
  return raw.replace(/=(2C|3D)/g, (_, code: string) => (code === '2C' ? ',' : '='));
}
