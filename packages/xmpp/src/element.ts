// A small XML element tree for stanzas: what the stream parser builds and what handlers read,
// rewrite and send. Written here rather than taken from ltx (xmpp.js's) because ltx ships no
// types and brings parsers we do not use; this is the ~100 lines a stanza needs.

export type XmlNode = XmlElement | string;

/** One XML element: its qualified name as sent, attributes (namespace declarations included), children. */
export class XmlElement {
  // `declare`: set by the constructor only, with no class-field initializer. With one (ES2022 [[Define]]
  // semantics), every element built — by this class and by the modules' subclasses (the archive's, stream
  // management's) — ran the same initializer on objects of up to five shapes: its property definitions
  // went megamorphic, to the runtime, about 6 µs a message under SM+MAM load (bench/xmpp, CPU profile).
  /** Qualified name as it appears in the markup: `message`, `stream:features`. */
  declare name: string;
  declare readonly attrs: Record<string, string>;
  declare readonly children: XmlNode[];
  /** The namespace the element is in, resolved (inherited declarations included). */
  declare xmlns: string;

  constructor(name: string, attrs: Record<string, string> = {}, children: XmlNode[] = [], xmlns?: string) {
    this.name = name;
    this.attrs = attrs;
    this.children = children;
    this.xmlns = xmlns ?? attrs.xmlns ?? '';
  }

  /** The name without a prefix. */
  get local(): string {
    const colon = this.name.indexOf(':');
    return colon === -1 ? this.name : this.name.slice(colon + 1);
  }

  attr(name: string): string | undefined {
    return this.attrs[name];
  }

  /** Set (or, with undefined, remove) an attribute. */
  setAttr(name: string, value: string | undefined): this {
    if (value === undefined) delete this.attrs[name];
    else this.attrs[name] = value;
    return this;
  }

  /** The first child element with this local name (and namespace, when given). */
  getChild(local: string, xmlns?: string): XmlElement | undefined {
    for (const child of this.children) {
      if (typeof child !== 'string' && child.local === local && (xmlns === undefined || child.xmlns === xmlns)) return child;
    }
    return undefined;
  }

  /** Every child element, or those with this local name (and namespace). */
  getChildren(local?: string, xmlns?: string): XmlElement[] {
    const found: XmlElement[] = [];
    for (const child of this.children) {
      if (typeof child === 'string') continue;
      if ((local === undefined || child.local === local) && (xmlns === undefined || child.xmlns === xmlns)) found.push(child);
    }
    return found;
  }

  /** The element's text content (its direct text children). */
  text(): string {
    let text = '';
    for (const child of this.children) if (typeof child === 'string') text += child;
    return text;
  }

  /** The text of the first child with this local name, or undefined. */
  getChildText(local: string, xmlns?: string): string | undefined {
    return this.getChild(local, xmlns)?.text();
  }

  /** Append children; returns this, for building. */
  append(...children: XmlNode[]): this {
    for (const child of children) this.children.push(child);
    return this;
  }

  /** A copy with these attributes changed (undefined removes one); children are shared, not copied. */
  with(attrs: Record<string, string | undefined>): XmlElement {
    const copy = new XmlElement(this.name, { ...this.attrs }, this.children, this.xmlns);
    for (const [name, value] of Object.entries(attrs)) copy.setAttr(name, value);
    return copy;
  }

  /**
   * Serialize the children once for every copy made with `with()` (they share the children): a
   * room's message to 200 occupants differs only in `to`, so its body is written once, not 200
   * times. The children must not change afterwards.
   */
  shareSerialization(): this {
    if (this.children.length > 0) sharedInner.set(this.children, serializeChildren(this));
    return this;
  }

  /**
   * Serialize, escaping text and attribute values. Iterative (an explicit stack, not recursion),
   * so no depth of nesting can overflow the call stack.
   */
  toString(): string {
    const inner = sharedInner.get(this.children);
    if (inner !== undefined) {
      let head = `<${this.name}`;
      for (const [name, value] of Object.entries(this.attrs)) head += ` ${name}='${escapeAttribute(value)}'`;
      return `${head}>${inner}</${this.name}>`;
    }
    let out = '';
    // Each frame: an element and the index of its next child to write.
    const stack: Array<{ element: XmlElement; next: number }> = [];
    const open = (element: XmlElement): void => {
      out += `<${element.name}`;
      for (const [name, value] of Object.entries(element.attrs)) out += ` ${name}='${escapeAttribute(value)}'`;
      if (element.children.length === 0) {
        out += '/>';
        return;
      }
      out += '>';
      stack.push({ element, next: 0 });
    };
    open(this);
    while (stack.length > 0) {
      const frame = stack[stack.length - 1] as { element: XmlElement; next: number };
      if (frame.next === frame.element.children.length) {
        out += `</${frame.element.name}>`;
        stack.pop();
        continue;
      }
      const child = frame.element.children[frame.next++] as XmlNode;
      if (typeof child === 'string') out += escapeText(child);
      else open(child);
    }
    return out;
  }
}

/**
 * An element as plain JSON, `[name, attrs, xmlns, ...children]` (text children as strings): how a
 * stanza crosses the bus between processes. `JSON.parse` and {@link fromTree} rebuild it for a
 * fraction of what parsing its XML again costs (a parser per stanza).
 */
export interface ElementTree extends Array<string | Record<string, string> | ElementTree> {
  0: string;
  1: Record<string, string>;
  2: string;
}

/** The JSON form of an element; undefined past `maxDepth` levels (send its XML then). */
export function toTree(element: XmlElement, maxDepth = 64): ElementTree | undefined {
  if (maxDepth <= 0) return undefined;
  const tree = [element.name, element.attrs, element.xmlns] as ElementTree;
  for (const child of element.children) {
    if (typeof child === 'string') tree.push(child);
    else {
      const sub = toTree(child, maxDepth - 1);
      if (sub === undefined) return undefined;
      tree.push(sub);
    }
  }
  return tree;
}

/** An element from its JSON form; undefined for anything that is not one (a corrupt entry), or past `maxDepth`. */
export function fromTree(value: unknown, maxDepth = 64): XmlElement | undefined {
  if (!Array.isArray(value) || value.length < 3 || maxDepth <= 0) return undefined;
  const [name, attrs, xmlns] = value as unknown[];
  if (
    typeof name !== 'string' ||
    name === '' ||
    typeof xmlns !== 'string' ||
    typeof attrs !== 'object' ||
    attrs === null ||
    Array.isArray(attrs)
  )
    return undefined;
  const clean: Record<string, string> = {};
  for (const [key, attr] of Object.entries(attrs)) {
    if (typeof attr !== 'string') return undefined;
    clean[key] = attr;
  }
  const children: XmlNode[] = [];
  for (let i = 3; i < value.length; i++) {
    const child = value[i] as unknown;
    if (typeof child === 'string') children.push(child);
    else {
      const sub = fromTree(child, maxDepth - 1);
      if (sub === undefined) return undefined;
      children.push(sub);
    }
  }
  return new XmlElement(name, clean, children, xmlns);
}

/** Children serialized once, by children array (shared by an element's `with()` copies). */
const sharedInner = new WeakMap<XmlNode[], string>();

function serializeChildren(element: XmlElement): string {
  const whole = new XmlElement(element.name, {}, element.children, element.xmlns).toString();
  // `<name>` … `</name>` around the children.
  return whole.slice(element.name.length + 2, whole.length - element.name.length - 3);
}

/** Build an element: `xml('message', { to, type: 'chat' }, xml('body', {}, 'hi'))`. Undefined attributes are left out. */
export function xml(name: string, attrs: Record<string, string | undefined> = {}, ...children: Array<XmlNode | undefined>): XmlElement {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined) clean[key] = value;
  return new XmlElement(
    name,
    clean,
    children.filter((child): child is XmlNode => child !== undefined),
  );
}

export function escapeText(text: string): string {
  return text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

export function escapeAttribute(value: string): string {
  return value.replace(/[&<>'"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', "'": '&apos;', '"': '&quot;' })[c] as string);
}
