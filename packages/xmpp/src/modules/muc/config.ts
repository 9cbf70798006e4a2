// A room's configuration (XEP-0045 §10.2, the muc#roomconfig form of §15.5.3) as Prosody's mod_muc
// offers it: what an owner sees in the form, what a submission changes, and the muc#roominfo form
// of the room's disco#info (§15.5.4).

import type { XmlElement } from '../../element.js';
import { StanzaErrorException } from '../../stanza-error.js';
import type { JsonValue } from '../../stores/types.js';
import { buildDataForm, type DataForm, DataFormError, type DataFormField, parseDataForm } from '../data-form.js';

export const NS_MUC_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';
export const NS_MUC_ROOMINFO = 'http://jabber.org/protocol/muc#roominfo';

/** Who sees occupants' real JIDs (`muc#roomconfig_whois`). */
export type Whois = 'moderators' | 'anyone';
/** Who may send private messages (`muc#roomconfig_allowpm`). */
export type AllowPm = 'anyone' | 'participants' | 'moderators' | 'none';

export interface RoomConfig {
  name: string;
  description: string;
  language: string;
  persistent: boolean;
  /** Listed in the service's disco#items (`muc_public`); hidden otherwise. */
  public: boolean;
  membersOnly: boolean;
  moderated: boolean;
  /** Empty: no password. */
  password: string;
  /** Occupants at most (owners and admins may join past it). */
  maxUsers: number;
  /** Messages kept for history on join. */
  historyLength: number;
  whois: Whois;
  /** Participants (not only moderators) may change the subject. */
  changeSubject: boolean;
  /** Participants (not only moderators) may invite. */
  allowInvites: boolean;
  allowPm: AllowPm;
  /** Messages are archived (MAM on the room JID, status 170). */
  logging: boolean;
}

/** Service-wide bounds of a room's configuration. */
export interface ConfigLimits {
  maxUsers: number;
  maxHistoryLength: number;
  maxNameLength: number;
  maxDescriptionLength: number;
  maxPasswordLength: number;
}

export function defaultConfig(defaults: Partial<RoomConfig>, limits: ConfigLimits): RoomConfig {
  return {
    name: '',
    description: '',
    language: '',
    persistent: false,
    public: true,
    membersOnly: false,
    moderated: false,
    password: '',
    maxUsers: Math.min(limits.maxUsers, 200),
    historyLength: Math.min(limits.maxHistoryLength, 20),
    whois: 'moderators',
    changeSubject: false,
    allowInvites: false,
    allowPm: 'anyone',
    logging: true,
    ...defaults,
  };
}

const MAX_USERS_CHOICES = [10, 20, 30, 50, 100, 200, 500, 1000, 5000, 10000];
const WHOIS: readonly Whois[] = ['moderators', 'anyone'];
const ALLOW_PM: readonly AllowPm[] = ['anyone', 'participants', 'moderators', 'none'];

const bool = (value: boolean): string => (value ? '1' : '0');

/** The owner's configuration form (§10.2): current values filled in. */
export function configForm(room: string, config: RoomConfig, limits: ConfigLimits): XmlElement {
  const maxUsers = MAX_USERS_CHOICES.filter((n) => n <= limits.maxUsers);
  if (!maxUsers.includes(limits.maxUsers)) maxUsers.push(limits.maxUsers);
  if (!maxUsers.includes(config.maxUsers)) maxUsers.push(config.maxUsers);
  maxUsers.sort((a, b) => a - b);
  const fields: DataFormField[] = [
    { var: 'muc#roomconfig_roomname', type: 'text-single', label: 'Title', values: [config.name] },
    { var: 'muc#roomconfig_roomdesc', type: 'text-single', label: 'Description', values: [config.description] },
    { var: 'muc#roomconfig_lang', type: 'text-single', label: 'Language tag for room (e.g. en, de, fr)', values: [config.language] },
    {
      var: 'muc#roomconfig_persistentroom',
      type: 'boolean',
      label: 'Persistent (room is not destroyed when the last participant leaves)',
      values: [bool(config.persistent)],
    },
    { var: 'muc#roomconfig_publicroom', type: 'boolean', label: 'Include room information in public lists', values: [bool(config.public)] },
    { var: 'muc#roomconfig_membersonly', type: 'boolean', label: 'Only allow members to join', values: [bool(config.membersOnly)] },
    {
      var: 'muc#roomconfig_moderatedroom',
      type: 'boolean',
      label: 'Moderated (only participants with voice may speak)',
      values: [bool(config.moderated)],
    },
    { var: 'muc#roomconfig_passwordprotectedroom', type: 'boolean', label: 'Password protected', values: [bool(config.password !== '')] },
    { var: 'muc#roomconfig_roomsecret', type: 'text-private', label: 'Password', values: [config.password] },
    {
      var: 'muc#roomconfig_maxusers',
      type: 'list-single',
      label: 'Maximum number of participants',
      values: [String(config.maxUsers)],
      options: maxUsers.map((n) => ({ value: String(n) })),
    },
    {
      var: 'muc#roomconfig_whois',
      type: 'list-single',
      label: 'Addresses (JIDs) of room occupants may be viewed by',
      values: [config.whois],
      options: [
        { value: 'moderators', label: 'Moderators only' },
        { value: 'anyone', label: 'Anyone' },
      ],
    },
    {
      var: 'muc#roomconfig_changesubject',
      type: 'boolean',
      label: 'Allow anyone to set the room’s subject',
      values: [bool(config.changeSubject)],
    },
    {
      var: 'muc#roomconfig_allowinvites',
      type: 'boolean',
      label: 'Allow members to invite new members',
      values: [bool(config.allowInvites)],
    },
    {
      var: 'muc#roomconfig_allowpm',
      type: 'list-single',
      label: 'Allow private messages from',
      values: [config.allowPm],
      options: ALLOW_PM.map((value) => ({ value })),
    },
    { var: 'muc#roomconfig_enablelogging', type: 'boolean', label: 'Archive chat on server', values: [bool(config.logging)] },
    {
      var: 'muc#roomconfig_historylength',
      type: 'text-single',
      label: `Maximum number of history messages returned by the room (at most ${limits.maxHistoryLength})`,
      values: [String(config.historyLength)],
    },
  ];
  return buildDataForm({
    type: 'form',
    formType: NS_MUC_ROOMCONFIG,
    title: `Configuration for ${room}`,
    instructions: 'Complete and submit this form to configure the room.',
    fields,
  });
}

/**
 * A submitted configuration form applied to `current`: the new configuration. Fields a client
 * does not know are left out of a submission; fields this service does not know are ignored (as
 * Prosody does). A value out of range is `not-acceptable`, a malformed form `bad-request`.
 */
export function applyConfigForm(x: XmlElement, current: RoomConfig, limits: ConfigLimits): RoomConfig {
  const form = parseDataForm(x);
  if (form.formType !== undefined && form.formType !== NS_MUC_ROOMCONFIG)
    throw new DataFormError(`FORM_TYPE must be '${NS_MUC_ROOMCONFIG}'`);
  const next: RoomConfig = { ...current };
  const text = (name: string, max: number): string | undefined => {
    const value = single(form, name);
    if (value !== undefined && [...value].length > max)
      throw new StanzaErrorException('not-acceptable', `${name} is longer than ${max} characters`);
    return value;
  };
  const flag = (name: string): boolean | undefined => form.boolean(name);

  const name = text('muc#roomconfig_roomname', limits.maxNameLength);
  if (name !== undefined) next.name = name;
  const description = text('muc#roomconfig_roomdesc', limits.maxDescriptionLength);
  if (description !== undefined) next.description = description;
  const language = text('muc#roomconfig_lang', 64);
  if (language !== undefined) next.language = language;
  const persistent = flag('muc#roomconfig_persistentroom');
  if (persistent !== undefined) next.persistent = persistent;
  const isPublic = flag('muc#roomconfig_publicroom');
  if (isPublic !== undefined) next.public = isPublic;
  const membersOnly = flag('muc#roomconfig_membersonly');
  if (membersOnly !== undefined) next.membersOnly = membersOnly;
  const moderated = flag('muc#roomconfig_moderatedroom');
  if (moderated !== undefined) next.moderated = moderated;
  const secret = text('muc#roomconfig_roomsecret', limits.maxPasswordLength);
  if (secret !== undefined) next.password = secret;
  // "Password protected" off clears the password; on with no password given keeps the old one.
  if (flag('muc#roomconfig_passwordprotectedroom') === false) next.password = '';
  const maxUsers = single(form, 'muc#roomconfig_maxusers');
  if (maxUsers !== undefined) {
    // XEP-0045 §15.5.3: 'none' is no limit: the service's own then.
    const value = maxUsers === 'none' || maxUsers === '' ? limits.maxUsers : integer(maxUsers, 'muc#roomconfig_maxusers');
    if (value < 1 || value > limits.maxUsers)
      throw new StanzaErrorException('not-acceptable', `muc#roomconfig_maxusers must be from 1 to ${limits.maxUsers}`);
    next.maxUsers = value;
  }
  const whois = single(form, 'muc#roomconfig_whois');
  if (whois !== undefined) {
    if (!(WHOIS as readonly string[]).includes(whois))
      throw new StanzaErrorException('not-acceptable', "muc#roomconfig_whois must be 'moderators' or 'anyone'");
    next.whois = whois as Whois;
  }
  const changeSubject = flag('muc#roomconfig_changesubject');
  if (changeSubject !== undefined) next.changeSubject = changeSubject;
  const allowInvites = flag('muc#roomconfig_allowinvites');
  if (allowInvites !== undefined) next.allowInvites = allowInvites;
  const allowPm = single(form, 'muc#roomconfig_allowpm');
  if (allowPm !== undefined) {
    if (!(ALLOW_PM as readonly string[]).includes(allowPm))
      throw new StanzaErrorException('not-acceptable', `muc#roomconfig_allowpm must be one of ${ALLOW_PM.join(', ')}`);
    next.allowPm = allowPm as AllowPm;
  }
  const logging = flag('muc#roomconfig_enablelogging');
  if (logging !== undefined) next.logging = logging;
  const history = single(form, 'muc#roomconfig_historylength');
  if (history !== undefined && history !== '') {
    const value = integer(history, 'muc#roomconfig_historylength');
    if (value > limits.maxHistoryLength)
      throw new StanzaErrorException('not-acceptable', `muc#roomconfig_historylength must be from 0 to ${limits.maxHistoryLength}`);
    next.historyLength = value;
  }
  return next;
}

function single(form: DataForm, name: string): string | undefined {
  if (!form.has(name)) return undefined;
  return form.value(name) ?? '';
}

function integer(text: string, name: string): number {
  if (!/^\d{1,9}$/.test(text.trim())) throw new StanzaErrorException('not-acceptable', `${name} must be a non-negative integer`);
  return Number(text.trim());
}

/** The muc#roominfo form of the room's disco#info (§15.5.4). */
export function roomInfoForm(config: RoomConfig, occupants: number, subject: string): XmlElement {
  return buildDataForm({
    type: 'result',
    formType: NS_MUC_ROOMINFO,
    fields: [
      { var: 'muc#roomconfig_roomname', label: 'Title', values: [config.name] },
      { var: 'muc#roominfo_description', label: 'Description', values: [config.description] },
      { var: 'muc#roominfo_subject', label: 'Subject', values: [subject] },
      { var: 'muc#roominfo_occupants', label: 'Number of occupants', values: [String(occupants)] },
      { var: 'muc#roominfo_lang', label: 'Language tag for room', values: [config.language] },
      {
        var: 'muc#roomconfig_changesubject',
        type: 'boolean',
        label: 'Allow anyone to set the room’s subject',
        values: [bool(config.changeSubject)],
      },
      {
        var: 'muc#roomconfig_allowinvites',
        type: 'boolean',
        label: 'Allow members to invite new members',
        values: [bool(config.allowInvites)],
      },
    ],
  });
}

/** The room's disco#info features (§15.3), from its configuration. */
export function roomFeatures(config: RoomConfig): string[] {
  return [
    config.public ? 'muc_public' : 'muc_hidden',
    config.persistent ? 'muc_persistent' : 'muc_temporary',
    config.membersOnly ? 'muc_membersonly' : 'muc_open',
    config.moderated ? 'muc_moderated' : 'muc_unmoderated',
    config.password !== '' ? 'muc_passwordprotected' : 'muc_unsecured',
    config.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
  ];
}

/** A stored configuration read back defensively: what is missing or malformed takes the default. */
export function configFromJson(value: JsonValue | undefined, fallback: RoomConfig): RoomConfig {
  const config = { ...fallback };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return config;
  const target = config as unknown as Record<string, JsonValue>;
  for (const key of Object.keys(fallback) as Array<keyof RoomConfig>) {
    const stored = value[key];
    if (stored !== undefined && typeof stored === typeof fallback[key]) target[key] = stored;
  }
  if (!(WHOIS as readonly string[]).includes(config.whois)) config.whois = fallback.whois;
  if (!(ALLOW_PM as readonly string[]).includes(config.allowPm)) config.allowPm = fallback.allowPm;
  return config;
}

export function configToJson(config: RoomConfig): JsonValue {
  return { ...config };
}
