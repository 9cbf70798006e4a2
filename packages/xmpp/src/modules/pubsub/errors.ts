// PubSub's stanza errors: a defined condition with an application condition in
// http://jabber.org/protocol/pubsub#errors (XEP-0060 §7–§8, table in §14.2).

import { type XmlElement, xml } from '../../element.js';
import { NS_PUBSUB_ERRORS } from '../../namespaces.js';
import { type StanzaErrorCondition, StanzaErrorException } from '../../stanza-error.js';

/** `<name xmlns='…pubsub#errors'/>`, with a `feature` attribute for `<unsupported/>`. */
export function pubsubCondition(name: string, feature?: string): XmlElement {
  return xml(name, { xmlns: NS_PUBSUB_ERRORS, feature });
}

/** An error to throw from a handler: `condition` plus the PubSub application condition, when given. */
export function pubsubError(condition: StanzaErrorCondition, app?: string, text?: string): StanzaErrorException {
  return new StanzaErrorException(condition, text, app === undefined ? undefined : pubsubCondition(app));
}

/** `<feature-not-implemented/>` with `<unsupported feature='…'/>` (§7.1.3.4 and elsewhere). */
export function unsupported(feature: string, text?: string): StanzaErrorException {
  return new StanzaErrorException('feature-not-implemented', text, pubsubCondition('unsupported', feature));
}
