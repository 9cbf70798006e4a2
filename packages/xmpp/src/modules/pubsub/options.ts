import { XmppConfigError } from '../../config-error.js';

/** A whole-number option of one of the PubSub modules (pep, caps, private, bookmarks, vcard-avatar), checked when the factory runs. */
export function wholeNumber(module: string, name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `${module}: ${name} must be a whole number ≥ ${min}, not ${String(value)}`);
  }
  return value;
}
