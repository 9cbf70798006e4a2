// A list's elements: a ring buffer, so pushes and pops at both ends are O(1) (Redis's quicklist
// is a linked list of small arrays for the same reason). A plain array's `unshift`/`shift` move
// every element: LPUSH to a list of 100 000 elements cost 100 000 moves.

export class Deque<T> implements Iterable<T> {
  #items: Array<T | undefined>;
  #head = 0;
  #length = 0;

  constructor(items: Iterable<T> = []) {
    const array = [...items];
    this.#items = new Array<T | undefined>(capacityFor(array.length));
    for (let i = 0; i < array.length; i++) this.#items[i] = array[i];
    this.#length = array.length;
  }

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = item;
    this.#length++;
  }

  unshift(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1) & (this.#items.length - 1);
    this.#items[this.#head] = item;
    this.#length++;
  }

  /** The last element, taken out; undefined when empty. */
  pop(): T | undefined {
    if (this.#length === 0) return undefined;
    const at = (this.#head + this.#length - 1) & (this.#items.length - 1);
    const item = this.#items[at];
    this.#items[at] = undefined;
    this.#length--;
    return item;
  }

  /** The first element, taken out; undefined when empty. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#length--;
    return item;
  }

  /** Up to `count` elements from the left, in order. */
  shiftMany(count: number): T[] {
    const taken: T[] = [];
    while (taken.length < count && this.#length > 0) taken.push(this.shift() as T);
    return taken;
  }

  /** Up to `count` elements from the right, last first (RPOP's order). */
  popMany(count: number): T[] {
    const taken: T[] = [];
    while (taken.length < count && this.#length > 0) taken.push(this.pop() as T);
    return taken;
  }

  /** The element at `index` (0 is the first), or undefined. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.#length) return undefined;
    return this.#items[(this.#head + index) & (this.#items.length - 1)];
  }

  /** Replace the element at an index inside the list. */
  set(index: number, item: T): void {
    this.#items[(this.#head + index) & (this.#items.length - 1)] = item;
  }

  /** Elements `start` to `end` (exclusive), as an array. */
  slice(start: number, end = this.#length): T[] {
    const out: T[] = [];
    for (let i = Math.max(start, 0); i < Math.min(end, this.#length); i++) out.push(this.at(i) as T);
    return out;
  }

  toArray(): T[] {
    return this.slice(0);
  }

  /** Replace every element (edits in the middle of a list go through an array: O(n), as in Redis). */
  replace(items: readonly T[]): void {
    this.#items = new Array<T | undefined>(capacityFor(items.length));
    for (let i = 0; i < items.length; i++) this.#items[i] = items[i];
    this.#head = 0;
    this.#length = items.length;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = 0; i < this.#length; i++) yield this.#items[(this.#head + i) & (this.#items.length - 1)] as T;
  }

  /** Double the capacity, the elements in order from index 0. */
  #grow(): void {
    const items = new Array<T | undefined>(this.#items.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = this.#items[(this.#head + i) & (this.#items.length - 1)];
    this.#items = items;
    this.#head = 0;
  }
}

/** A power of two that holds `length` elements (at least 4). */
function capacityFor(length: number): number {
  let capacity = 4;
  while (capacity < length) capacity *= 2;
  return capacity;
}
