/** The SASL failure conditions of RFC 6120 §6.5, the child element of `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`. */
export type SaslFailure =
  | 'aborted'
  | 'account-disabled'
  | 'credentials-expired'
  | 'encryption-required'
  | 'incorrect-encoding'
  | 'invalid-authzid'
  | 'invalid-mechanism'
  | 'malformed-request'
  | 'mechanism-too-weak'
  | 'not-authorized'
  | 'temporary-auth-failure';

/** Every {@link SaslFailure}, in the order RFC 6120 §6.5 lists them. */
export const saslFailures: readonly SaslFailure[] = [
  'aborted',
  'account-disabled',
  'credentials-expired',
  'encryption-required',
  'incorrect-encoding',
  'invalid-authzid',
  'invalid-mechanism',
  'malformed-request',
  'mechanism-too-weak',
  'not-authorized',
  'temporary-auth-failure',
];

/**
 * A failed step of an exchange: the condition to send and, optionally, a human-readable `<text/>`.
 * The text never says more than the condition about whether an account exists.
 */
export interface SaslFailureResult {
  failure: SaslFailure;
  text?: string;
}

/** Whether `value` is a {@link SaslFailure} condition name. */
export function isSaslFailure(value: string): value is SaslFailure {
  return (saslFailures as readonly string[]).includes(value);
}
