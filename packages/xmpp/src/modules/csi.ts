import { XmppConfigError } from '../config-error.js';
import { type XmlElement, xml } from '../element.js';
import type { XmppModule } from '../module.js';
import { NS_CLIENT, NS_CSI } from '../namespaces.js';
import type { XmppSession } from '../session.js';

// Client State Indication (XEP-0352): a client says `<inactive/>` when nobody looks at it (a phone
// with its screen off) and `<active/>` when somebody does. While it is inactive, presence updates
// for it are held — only the latest per contact JID — and written when it becomes active again or
// when anything else (a message, an IQ, a subscription request) goes to it, just before that
// stanza: nothing is reordered except that superseded presence updates of a contact are dropped.
// A stream starts active, a resumed one too (XEP-0352 §5.2).

export interface CsiOptions {
  /** Contacts whose presence one inactive session may hold; one more flushes everything held. Default 1000. */
  maxHeld?: number;
}

/** The module's name in a server's module list. */
export const CSI = 'csi';

interface CsiState {
  inactive: boolean;
  /** Held presence updates by sender (full JID), oldest first. */
  held: Map<string, XmlElement>;
  /** The session object that said `<inactive/>`: after a resume (another session took over) the state is active again. */
  owner: XmppSession | undefined;
  flushing: boolean;
}

/** Presence updates a client can do without for a while: availability, not subscriptions or errors. */
function holdable(stanza: XmlElement): boolean {
  if (stanza.name !== 'presence' || (stanza.xmlns !== '' && stanza.xmlns !== NS_CLIENT)) return false;
  const type = stanza.attr('type');
  return type === undefined || type === 'unavailable';
}

function isStanza(element: XmlElement): boolean {
  return (
    (element.xmlns === '' || element.xmlns === NS_CLIENT) &&
    (element.name === 'message' || element.name === 'presence' || element.name === 'iq')
  );
}

/** Client State Indication (XEP-0352). */
export function csi(options: CsiOptions = {}): XmppModule {
  const maxHeld = options.maxHeld ?? 1000;
  if (!Number.isInteger(maxHeld) || maxHeld < 1) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `csi: maxHeld must be a whole number ≥ 1, not ${String(options.maxHeld)}`);
  }
  return {
    name: CSI,
    setup(api) {
      const states = api.sessionState<CsiState>(() => ({ inactive: false, held: new Map(), owner: undefined, flushing: false }));

      /** Write what is held (through the filters after this one: stream management counts them). */
      const flush = (session: XmppSession, state: CsiState): void => {
        if (state.held.size === 0) return;
        const held = [...state.held.values()];
        state.held.clear();
        state.flushing = true;
        try {
          for (const stanza of held) session.send(stanza);
        } finally {
          state.flushing = false;
        }
      };

      api.streamFeature('bind', (session) => (session.authenticated ? xml('csi', { xmlns: NS_CSI }) : undefined));

      /** Tell the other modules (stream management asks for acks less often while inactive). */
      const tell = (event: 'session/inactive' | 'session/active', session: XmppSession): void => {
        api.fire(event, { session }).catch((error: unknown) => api.logger.error({ err: error, event }, 'csi: a hook failed'));
      };
      api.nonza({ xmlns: NS_CSI, element: 'inactive' }, (_element, session) => {
        const state = states.get(session);
        const was = state.inactive && state.owner === session;
        state.inactive = true;
        state.owner = session;
        if (!was) tell('session/inactive', session);
      });
      api.nonza({ xmlns: NS_CSI, element: 'active' }, (_element, session) => {
        const state = states.peek(session);
        if (state === undefined) return;
        const was = state.inactive && state.owner === session;
        state.inactive = false;
        state.owner = undefined;
        if (was) tell('session/active', session);
        // Before anything the client sends next is answered (XEP-0352 §5.1: in-order processing).
        flush(session, state);
      });

      api.outbound((stanza, session) => {
        const state = states.peek(session);
        if (state === undefined || state.flushing || !isStanza(stanza)) return stanza;
        if (state.inactive && state.owner !== session) {
          // The stream was resumed on another connection: it starts active.
          state.inactive = false;
          state.owner = undefined;
        }
        if (state.inactive && holdable(stanza)) {
          const from = stanza.attr('from') ?? '';
          // The latest update of a contact replaces the one held, and takes its place at the end.
          state.held.delete(from);
          state.held.set(from, stanza);
          if (state.held.size > maxHeld) flush(session, state);
          return null;
        }
        // Anything else goes out now, after what was held (so the client sees presence in order).
        flush(session, state);
        return stanza;
      }, 0);
    },
  };
}
