import { XmlElement, xml } from '../element.js';
import { sessionState } from '../host.js';
import type { StanzaEvent, XmppModule } from '../module.js';
import { NS_CARBONS, NS_FORWARD, NS_HINTS, NS_MUC_USER } from '../namespaces.js';
import type { XmppSession } from '../session.js';

/**
 * Whether a session enabled carbons. One state for every server (it lives in each session), so that
 * the cluster directory can publish it and mirror it on the sessions of other processes.
 */
export const carbonsState = sessionState<{ on: boolean }>(() => ({ on: false }));

/**
 * Message carbons (XEP-0280): a resource that enables them gets a copy of every chat message its
 * account sends from another resource (`<sent/>`) or receives on another resource (`<received/>`).
 */
export function carbons(): XmppModule {
  return {
    name: 'carbons',
    setup(api) {
      const enabled = carbonsState;
      api.discoFeature(NS_CARBONS);
      const toggle = (on: boolean) => (_iq: XmlElement, context: { session: XmppSession | undefined }) => {
        if (context.session !== undefined) enabled.get(context.session).on = on;
        return undefined;
      };
      api.iq({ xmlns: NS_CARBONS, element: 'enable', to: 'self', type: 'set' }, toggle(true));
      api.iq({ xmlns: NS_CARBONS, element: 'disable', to: 'self', type: 'set' }, toggle(false));

      const copy = (kind: 'sent' | 'received', message: XmlElement, owner: XmppSession): XmlElement =>
        xml(
          'message',
          { from: owner.jid?.bare, to: owner.jid?.toString(), type: message.attr('type') ?? 'normal' },
          xml(
            kind,
            { xmlns: NS_CARBONS },
            xml(
              'forwarded',
              { xmlns: NS_FORWARD },
              new XmlElement(message.name, { xmlns: 'jabber:client', ...message.attrs }, message.children, message.xmlns),
            ),
          ),
        );
      // Chat messages, and normal ones with a body (XEP-0280 §6), unless marked private or no-copy.
      const eligible = (event: StanzaEvent): boolean => {
        const message = event.stanza;
        const type = message.attr('type') ?? 'normal';
        if (event.redelivery) return false;
        if (type !== 'chat' && !(type === 'normal' && message.getChild('body') !== undefined)) return false;
        return message.getChild('private', NS_CARBONS) === undefined && message.getChild('no-copy', NS_HINTS) === undefined;
      };
      // Sent: the sender's other resources, as soon as the message leaves its client.
      api.hook(
        'message/in',
        (event) => {
          if (!eligible(event) || event.session === undefined) return;
          for (const own of api.sessionsOf(event.from.bare)) {
            if (own !== event.session && enabled.peek(own)?.on === true) own.send(copy('sent', event.stanza, own));
          }
        },
        -100,
      );
      // Received: the recipient's other resources that did not get the message itself.
      // Not a room's private message (it carries muc#user <x/>) delivered to the full JID that is in the room:
      // the other resources are not occupants and could not answer there (as Prosody's mod_carbons).
      api.hook('message/delivered', (event) => {
        if (!eligible(event)) return;
        if (!event.to.isBare && event.stanza.getChild('x', NS_MUC_USER) !== undefined) return;
        const recipient = event.targets[0]?.jid?.bare;
        if (recipient === undefined) return;
        for (const other of api.sessionsOf(recipient)) {
          if (!event.targets.includes(other) && enabled.peek(other)?.on === true) other.send(copy('received', event.stanza, other));
        }
      });
    },
  };
}
