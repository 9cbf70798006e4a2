// A client's CLIENT TRACKING state, on its own so that client.ts can hold it without importing
// the tracking machinery (which imports client.ts).

/** Per-client tracking state (Redis's CLIENT_TRACKING_* flags, redirection and prefixes). */
export interface TrackingState {
  /** CLIENT TRACKING is on. */
  on: boolean;
  bcast: boolean;
  optin: boolean;
  optout: boolean;
  noloop: boolean;
  /** CLIENT CACHING YES (optin) or NO (optout) given for the next command. */
  caching: boolean;
  /** The redirect target has gone: `broken_redirect` in TRACKINGINFO. */
  brokenRedirect: boolean;
  /** Client id invalidations go to, 0 for this connection. */
  redirect: number;
  /** BCAST prefixes ('' for every key). */
  prefixes: Set<string>;
}
