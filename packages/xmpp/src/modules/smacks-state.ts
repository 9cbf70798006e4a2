import { sessionState } from '../host.js';

/**
 * What the cluster reads of a session's stream management (issue 12): its SM-ID while the session
 * may be resumed, and how long its journal on the bus must outlive the last write (the resumption
 * window plus the time it takes to find a dead process dead); the cluster calls `appended` when it wrote
 * the session's directory record into the journal (stream management counts entries to trim them). Set by the smacks module.
 */
export const smJournalState = sessionState<{ token?: string; ttlMs: number; appended?: () => void }>(() => ({ ttlMs: 0 }));
