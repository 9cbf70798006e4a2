import { sessionState } from '../../host.js';

/**
 * The rooms a session sits in, as the rooms' self-presences told it: `[room JID, nick, role]`, at most
 * {@link MAX_CARRIED_ROOMS}. The cluster carries it in the session's directory record, so that the process
 * resuming the session after its own died (XEP-0198 from the journal, issue 12) enters it in those rooms'
 * occupant lists again: the rooms' next holders find it there, instead of seeing it leave. Set by the MUC
 * module's cluster side (muc/cluster.ts).
 */
export const mucOccupancyState = sessionState<{
  rooms: Array<[string, string, string]> | undefined;
}>(() => ({ rooms: undefined }));

/** Rooms a session's directory record carries at most (past them, a resume on another process keeps the first ones). */
export const MAX_CARRIED_ROOMS = 100;
