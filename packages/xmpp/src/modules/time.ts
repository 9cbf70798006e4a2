// Entity Time (XEP-0202 v2.0): the server's clock on `urn:xmpp:time`, as UTC (XEP-0082 DateTime)
// and the offset of the server's time zone.

import { xml } from '../element.js';
import type { XmppModule } from '../module.js';
import { NS_TIME } from '../namespaces.js';

export interface TimeOptions {
  /** The clock (tests). Default `() => new Date()`. */
  now?: () => Date;
  /** The `<tzo/>` offset: `'local'` (the process's time zone, the default) or `'utc'` (`+00:00`, as Prosody answers). */
  timezone?: 'local' | 'utc';
}

/** XEP-0202: answers `<time xmlns='urn:xmpp:time'/>` addressed to the server. */
export function time(options: TimeOptions = {}): XmppModule {
  const now = options.now ?? (() => new Date());
  return {
    name: 'time',
    setup(api) {
      api.discoFeature(NS_TIME);
      api.iq({ xmlns: NS_TIME, element: 'time', to: 'host', type: 'get' }, () => {
        const date = now();
        const offset = options.timezone === 'utc' ? 0 : -date.getTimezoneOffset();
        return xml('time', { xmlns: NS_TIME }, xml('tzo', {}, formatOffset(offset)), xml('utc', {}, formatUtc(date)));
      });
    },
  };
}

/** XEP-0082 DateTime in UTC, whole seconds: `2026-11-28T04:42:46Z`. */
export function formatUtc(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A time zone offset in minutes east of UTC as XEP-0082 writes it: `+01:00`, `-05:30`, `+00:00`. */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}
