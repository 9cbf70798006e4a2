// XMPP addresses (RFC 7622): [localpart@]domainpart[/resourcepart]. Comparison uses a simplified
// preparation — NFC and lowercase for localpart and domain, NFC for the resource — in place of
// the full PRECIS profiles (a later step; see the notes of the XMPP issue).

const LOCALPART_FORBIDDEN = /["&'/:<>@\s]/u;
const MAX_PART_BYTES = 1023;

/** A parsed, prepared JID. Immutable; `toString()` gives its canonical form. */
export class Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;

  constructor(local: string, domain: string, resource = '') {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
  }

  /** Parse and prepare a JID; undefined when it is not a valid address. */
  static parse(text: string): Jid | undefined {
    const slash = text.indexOf('/');
    const bare = slash === -1 ? text : text.slice(0, slash);
    const resource = slash === -1 ? '' : text.slice(slash + 1).normalize('NFC');
    if (slash !== -1 && (resource === '' || byteLength(resource) > MAX_PART_BYTES)) return undefined;
    const at = bare.indexOf('@');
    const local = at === -1 ? '' : bare.slice(0, at).normalize('NFC').toLowerCase();
    const domain = (at === -1 ? bare : bare.slice(at + 1)).normalize('NFC').toLowerCase().replace(/\.$/, '');
    if (at !== -1 && (local === '' || LOCALPART_FORBIDDEN.test(local) || byteLength(local) > MAX_PART_BYTES)) return undefined;
    if (domain === '' || byteLength(domain) > MAX_PART_BYTES || /[\s@/]/.test(domain)) return undefined;
    return new Jid(local, domain, resource);
  }

  /** `local@domain` (or `domain`). */
  get bare(): string {
    return this.local === '' ? this.domain : `${this.local}@${this.domain}`;
  }

  get isBare(): boolean {
    return this.resource === '';
  }

  withResource(resource: string): Jid {
    return new Jid(this.local, this.domain, resource);
  }

  toBare(): Jid {
    return this.isBare ? this : new Jid(this.local, this.domain);
  }

  equals(other: Jid): boolean {
    return this.local === other.local && this.domain === other.domain && this.resource === other.resource;
  }

  toString(): string {
    return this.isBare ? this.bare : `${this.bare}/${this.resource}`;
  }
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
