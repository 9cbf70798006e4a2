// Data forms (XEP-0004 v2.13.1): what MAM queries (XEP-0313), PubSub publish-options and node
// configuration (XEP-0060) submit, and what those services answer with. Only what a server needs:
// parse a submitted form strictly (a malformed one is `bad-request`, §3.1 and §3.3), build
// form/result elements. FORM_TYPE (XEP-0068) names which form a submission is.

import { type XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import { NS_DATA } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';

/** XEP-0004 §3.3 field types. */
export type DataFormFieldType =
  | 'boolean'
  | 'fixed'
  | 'hidden'
  | 'jid-multi'
  | 'jid-single'
  | 'list-multi'
  | 'list-single'
  | 'text-multi'
  | 'text-private'
  | 'text-single';

const FIELD_TYPES: ReadonlySet<string> = new Set<DataFormFieldType>([
  'boolean',
  'fixed',
  'hidden',
  'jid-multi',
  'jid-single',
  'list-multi',
  'list-single',
  'text-multi',
  'text-private',
  'text-single',
]);

/** Types whose field carries more than one `<value/>`. */
const MULTI_TYPES: ReadonlySet<string> = new Set(['jid-multi', 'list-multi', 'text-multi']);

/** The form types of XEP-0004 §3.1. */
export type DataFormType = 'form' | 'submit' | 'cancel' | 'result';

/** A malformed data form: answered with `<bad-request/>` (XEP-0004 §3.1, XEP-0313 §4.1.1). */
export class DataFormError extends StanzaErrorException {
  constructor(text: string) {
    super('bad-request', text);
  }
}

/** One field of a form to build (or as parsed). */
export interface DataFormField {
  /** The field's name; absent only on `fixed` fields. */
  var?: string;
  type?: DataFormFieldType;
  label?: string;
  /** `<desc/>`: a natural-language description. */
  desc?: string;
  required?: boolean;
  values?: readonly string[];
  /** `<option/>`s of list fields. */
  options?: ReadonlyArray<{ value: string; label?: string }>;
  /** Further children, e.g. XEP-0122 `<validate/>`. */
  children?: readonly XmlElement[];
}

/** A form to build: a service's form (`form`), its answer (`result`). */
export interface DataFormSpec {
  type: DataFormType;
  /** Added as the first field, type `hidden` (XEP-0068 §3). */
  formType?: string;
  title?: string;
  instructions?: string;
  fields?: readonly DataFormField[];
}

/** Build `<x xmlns='jabber:x:data' type=…>` with its fields. */
export function buildDataForm(spec: DataFormSpec): XmlElement {
  const x = xml('x', { xmlns: NS_DATA, type: spec.type });
  if (spec.title !== undefined) x.append(xml('title', {}, spec.title));
  if (spec.instructions !== undefined) x.append(xml('instructions', {}, spec.instructions));
  if (spec.formType !== undefined) x.append(buildField({ var: 'FORM_TYPE', type: 'hidden', values: [spec.formType] }));
  for (const field of spec.fields ?? []) x.append(buildField(field));
  return x;
}

/** Build one `<field/>`. */
export function buildField(field: DataFormField): XmlElement {
  const element = xml('field', { var: field.var, type: field.type, label: field.label });
  if (field.desc !== undefined) element.append(xml('desc', {}, field.desc));
  if (field.required === true) element.append(xml('required'));
  for (const value of field.values ?? []) element.append(xml('value', {}, value));
  for (const option of field.options ?? []) element.append(xml('option', { label: option.label }, xml('value', {}, option.value)));
  for (const child of field.children ?? []) element.append(child);
  return element;
}

/** A parsed form: its FORM_TYPE and fields by name. */
export class DataForm {
  readonly type: DataFormType;
  /** The FORM_TYPE hidden field's value, when there is one. */
  readonly formType: string | undefined;
  /** The fields by `var` (FORM_TYPE excluded), in document order. */
  readonly fields: ReadonlyMap<string, { type: DataFormFieldType | undefined; values: readonly string[] }>;

  constructor(
    type: DataFormType,
    formType: string | undefined,
    fields: ReadonlyMap<string, { type: DataFormFieldType | undefined; values: readonly string[] }>,
  ) {
    this.type = type;
    this.formType = formType;
    this.fields = fields;
  }

  has(name: string): boolean {
    return this.fields.has(name);
  }

  /** Every value of a field (empty when absent). */
  values(name: string): readonly string[] {
    return this.fields.get(name)?.values ?? [];
  }

  /** A single-valued field's value: undefined when absent or empty; a `DataFormError` when it has several. */
  value(name: string): string | undefined {
    const values = this.values(name);
    if (values.length > 1) throw new DataFormError(`field '${name}' takes one value`);
    return values[0];
  }

  /** A boolean field (`1`/`true`, `0`/`false`, XEP-0004 §3.3); a `DataFormError` for anything else. */
  boolean(name: string): boolean | undefined {
    const value = this.value(name);
    if (value === undefined) return undefined;
    if (value === '1' || value === 'true') return true;
    if (value === '0' || value === 'false') return false;
    throw new DataFormError(`field '${name}' is not a boolean: '${value}'`);
  }

  /** A JID field, parsed; a `DataFormError` when it is not a valid JID. */
  jid(name: string): Jid | undefined {
    const value = this.value(name);
    if (value === undefined) return undefined;
    const jid = Jid.parse(value);
    if (jid === undefined) throw new DataFormError(`field '${name}' is not a JID: '${value}'`);
    return jid;
  }
}

export interface ParseDataFormOptions {
  /** The form types accepted (default: `submit` only). */
  types?: readonly DataFormType[];
  /** Fields allowed at most (default 256): a bigger form is refused. */
  maxFields?: number;
  /** Values per field allowed at most (default 1024). */
  maxValues?: number;
}

/**
 * Parse a data form strictly. Malformed — wrong namespace or type, a field without `var`, the
 * same `var` twice, an unknown field type, several values in a single-valued field, a boolean or
 * JID value that is not one, FORM_TYPE not hidden or with other than one value — throws a
 * {@link DataFormError} (`bad-request`).
 */
export function parseDataForm(x: XmlElement, options: ParseDataFormOptions = {}): DataForm {
  if (x.local !== 'x' || x.xmlns !== NS_DATA) throw new DataFormError('not a jabber:x:data form');
  const types = options.types ?? ['submit'];
  const type = x.attr('type');
  if (type === undefined || !(types as readonly string[]).includes(type)) {
    throw new DataFormError(`form type must be ${types.map((t) => `'${t}'`).join(' or ')}`);
  }
  const maxFields = options.maxFields ?? 256;
  const maxValues = options.maxValues ?? 1024;
  const fields = new Map<string, { type: DataFormFieldType | undefined; values: string[] }>();
  let formType: string | undefined;
  const elements = x.getChildren('field', NS_DATA);
  if (elements.length > maxFields) throw new DataFormError(`more than ${maxFields} fields`);
  for (const field of elements) {
    const fieldType = field.attr('type');
    if (fieldType !== undefined && !FIELD_TYPES.has(fieldType)) throw new DataFormError(`unknown field type '${fieldType}'`);
    const name = field.attr('var');
    if (name === undefined) {
      // §3.2: only `fixed` fields (labels in a form) may lack a var; a submission has none.
      if (fieldType === 'fixed') continue;
      throw new DataFormError('a field without a var');
    }
    if (name === 'FORM_TYPE' ? formType !== undefined : fields.has(name)) throw new DataFormError(`field '${name}' given twice`);
    const valueElements = field.getChildren('value', NS_DATA);
    if (valueElements.length > maxValues) throw new DataFormError(`field '${name}' has more than ${maxValues} values`);
    const values = valueElements.map((value) => value.text());
    if (values.length > 1 && fieldType !== undefined && !MULTI_TYPES.has(fieldType)) {
      throw new DataFormError(`field '${name}' of type '${fieldType}' takes one value`);
    }
    if (fieldType === 'boolean' && values[0] !== undefined && !['0', '1', 'true', 'false'].includes(values[0])) {
      throw new DataFormError(`field '${name}' is not a boolean: '${values[0]}'`);
    }
    if (fieldType === 'jid-single' || fieldType === 'jid-multi') {
      for (const value of values) if (Jid.parse(value) === undefined) throw new DataFormError(`field '${name}' is not a JID: '${value}'`);
    }
    if (name === 'FORM_TYPE') {
      // XEP-0068 §3: a hidden field (its type may be omitted in a submission) with one value.
      if ((fieldType !== undefined && fieldType !== 'hidden') || values.length !== 1) {
        throw new DataFormError('FORM_TYPE must be a hidden field with one value');
      }
      formType = values[0];
      continue;
    }
    fields.set(name, { type: fieldType as DataFormFieldType | undefined, values });
  }
  return new DataForm(type as DataFormType, formType, fields);
}

/**
 * Parse a submitted form of one FORM_TYPE: the form must name it (or, with `formTypeOptional`,
 * may leave it out), and only `allowed` fields may appear (when given); anything else is a
 * {@link DataFormError}.
 */
export function parseSubmittedForm(
  x: XmlElement,
  formType: string,
  options: ParseDataFormOptions & { allowed?: readonly string[]; formTypeOptional?: boolean } = {},
): DataForm {
  const form = parseDataForm(x, options);
  if (form.formType === undefined ? options.formTypeOptional !== true : form.formType !== formType) {
    throw new DataFormError(`FORM_TYPE must be '${formType}'`);
  }
  if (options.allowed !== undefined) {
    const allowed = new Set(options.allowed);
    for (const name of form.fields.keys()) if (!allowed.has(name)) throw new DataFormError(`unknown field '${name}'`);
  }
  return form;
}
