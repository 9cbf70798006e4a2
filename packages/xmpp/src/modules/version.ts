// Software Version (XEP-0092 v1.1): the server's name and version on `jabber:iq:version`. The
// operating system is left out by default, as XEP-0092 §4 and Prosody's `hide_os_type` suggest:
// it tells an attacker what to aim at.

import { readFileSync } from 'node:fs';
import { type as osType } from 'node:os';
import { xml } from '../element.js';
import type { XmppModule } from '../module.js';
import { NS_VERSION } from '../namespaces.js';

export interface VersionOptions {
  /** The software's name. Default 'portbind'. */
  name?: string;
  /** Its version. Default: the version of @portbind/xmpp. */
  version?: string;
  /** The `<os/>` element: `true` for the kernel's name (`os.type()`), a string for that text, `false` (the default) for none. */
  os?: boolean | string;
}

/** XEP-0092: answers `<query xmlns='jabber:iq:version'/>` addressed to the server. */
export function version(options: VersionOptions = {}): XmppModule {
  return {
    name: 'version',
    setup(api) {
      const name = options.name ?? 'portbind';
      const release = options.version ?? packageVersion();
      const os = options.os === true ? osType() : options.os === false || options.os === undefined ? undefined : options.os;
      api.discoFeature(NS_VERSION);
      api.iq({ xmlns: NS_VERSION, element: 'query', to: 'host', type: 'get' }, () =>
        xml(
          'query',
          { xmlns: NS_VERSION },
          xml('name', {}, name),
          xml('version', {}, release),
          os === undefined ? undefined : xml('os', {}, os),
        ),
      );
    },
  };
}

/** The version in this package's package.json (src/modules/ and dist/modules/ are both two levels below it). */
function packageVersion(): string {
  try {
    const manifest: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    if (typeof manifest === 'object' && manifest !== null && 'version' in manifest && typeof manifest.version === 'string') {
      return manifest.version;
    }
  } catch {
    // A bundled build without the manifest beside it: the version is unknown, not an error.
  }
  return 'unknown';
}
