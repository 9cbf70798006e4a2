// A Redis sorted set: a Map from member to score, and a skip list ordered by (score, member)
// whose links carry spans, so rank lookups, rank ranges and score or lex ranges are O(log n),
// as Redis's zskiplist (t_zset.c). Members are `latin1` strings, one character per byte, so
// comparing them with `<` is comparing their bytes (memcmp order), as Redis does on equal scores.
//
// Hand-written rather than an npm package: the candidates (js-sorted-set, tlhunter-sorted-set)
// keep no spans, so ZRANK and ZRANGE by rank would be O(n), and none orders ties by bytes.

const MAX_LEVEL = 32;
/** Up to this size, lex searches scan as Redis's listpack encoding does. */
const LINEAR = 128;
const P = 0.25;

/** Links at levels 0 to IN_NODE - 1 are fields of the node; higher ones (1 node in 256) in arrays. */
const IN_NODE = 4;

/**
 * A skip list node. Its first four links (Redis's `level[i].forward` and `.span`) are fields of
 * the node itself, so a hop loads the next node and nothing else (a link object or an array per
 * node would be one or two more cache misses per hop, which is most of what a descent costs).
 */
export class SkipNode {
  readonly member: string;
  /** Mutable only inside this module (a score change that keeps the position updates it in place). */
  score: number;
  backward: SkipNode | undefined;
  /** How many levels the node has (1 to 32). */
  readonly level: number;
  /** @internal Links 0 to 3 (use `next`): the next node at that level, and how many nodes the link skips. */
  n0: SkipNode | undefined = undefined;
  /** @internal */
  n1: SkipNode | undefined = undefined;
  /** @internal */
  n2: SkipNode | undefined = undefined;
  /** @internal */
  n3: SkipNode | undefined = undefined;
  /** @internal */
  s0 = 0;
  /** @internal */
  s1 = 0;
  /** @internal */
  s2 = 0;
  /** @internal */
  s3 = 0;
  /** @internal Links at levels 4 and up. */
  readonly up: (SkipNode | undefined)[] | undefined;
  /** @internal */
  readonly upSpan: number[] | undefined;

  constructor(member: string, score: number, level: number) {
    this.member = member;
    this.score = score;
    this.backward = undefined;
    this.level = level;
    this.up = level > IN_NODE ? new Array<SkipNode | undefined>(level - IN_NODE).fill(undefined) : undefined;
    this.upSpan = level > IN_NODE ? new Array<number>(level - IN_NODE).fill(0) : undefined;
  }

  /** The next node in order (level 0), or undefined at the tail. */
  get next(): SkipNode | undefined {
    return this.n0;
  }
}

function fwd(x: SkipNode, i: number): SkipNode | undefined {
  switch (i) {
    case 0:
      return x.n0;
    case 1:
      return x.n1;
    case 2:
      return x.n2;
    case 3:
      return x.n3;
    default:
      return (x.up as (SkipNode | undefined)[])[i - IN_NODE];
  }
}

function setFwd(x: SkipNode, i: number, to: SkipNode | undefined): void {
  switch (i) {
    case 0:
      x.n0 = to;
      break;
    case 1:
      x.n1 = to;
      break;
    case 2:
      x.n2 = to;
      break;
    case 3:
      x.n3 = to;
      break;
    default:
      (x.up as (SkipNode | undefined)[])[i - IN_NODE] = to;
  }
}

function spanOf(x: SkipNode, i: number): number {
  switch (i) {
    case 0:
      return x.s0;
    case 1:
      return x.s1;
    case 2:
      return x.s2;
    case 3:
      return x.s3;
    default:
      return (x.upSpan as number[])[i - IN_NODE] as number;
  }
}

function setSpan(x: SkipNode, i: number, span: number): void {
  switch (i) {
    case 0:
      x.s0 = span;
      break;
    case 1:
      x.s1 = span;
      break;
    case 2:
      x.s2 = span;
      break;
    case 3:
      x.s3 = span;
      break;
    default:
      (x.upSpan as number[])[i - IN_NODE] = span;
  }
}

/** A score range: `min`/`max` with exclusive ends (`(1.5` in ZRANGEBYSCORE). */
export interface ScoreRange {
  readonly min: number;
  readonly max: number;
  readonly minex: boolean;
  readonly maxex: boolean;
}

/** One end of a lex range: `-` (below every member), `+` (above every member), or a member. */
export type LexEnd = '-' | '+' | { readonly value: string; readonly exclusive: boolean };

/** A lex range, as ZRANGEBYLEX reads `[a`, `(b`, `-` and `+`. */
export interface LexRange {
  readonly min: LexEnd;
  readonly max: LexEnd;
}

const before = (score: number, member: string, node: SkipNode): boolean =>
  node.score < score || (node.score === score && node.member < member);

export const gteMin = (value: number, range: ScoreRange): boolean => (range.minex ? value > range.min : value >= range.min);
export const lteMax = (value: number, range: ScoreRange): boolean => (range.maxex ? value < range.max : value <= range.max);
export const lexGteMin = (value: string, { min }: LexRange): boolean =>
  min === '-' || (min !== '+' && (min.exclusive ? value > min.value : value >= min.value));
export const lexLteMax = (value: string, { max }: LexRange): boolean =>
  max === '+' || (max !== '-' && (max.exclusive ? value < max.value : value <= max.value));

function emptyScoreRange(range: ScoreRange): boolean {
  return range.min > range.max || (range.min === range.max && (range.minex || range.maxex));
}

function emptyLexRange({ min, max }: LexRange): boolean {
  if (min === '+' || max === '-') return true;
  if (min === '-' || max === '+') return false;
  return min.value > max.value || (min.value === max.value && (min.exclusive || max.exclusive));
}

// Scratch for insert/delete (single-threaded, never re-entered): the rightmost node before the
// new/deleted one at each level, and its rank. Filled with a dummy node so the arrays stay packed.
const DUMMY = new SkipNode('', 0, 0);
const update: SkipNode[] = new Array<SkipNode>(MAX_LEVEL).fill(DUMMY);
const ranks: number[] = new Array<number>(MAX_LEVEL).fill(0);

class SkipList {
  readonly head = new SkipNode('', 0, MAX_LEVEL);
  tail: SkipNode | undefined;
  length = 0;
  level = 1;

  #randomLevel(): number {
    let level = 1;
    while (Math.random() < P && level < MAX_LEVEL) level++;
    return level;
  }

  insert(score: number, member: string): SkipNode {
    return this.#link(new SkipNode(member, score, this.#randomLevel()));
  }

  /** Link a node (new, or unlinked to move it) at its place, keeping its level. */
  #link(node: SkipNode): SkipNode {
    const { score, member } = node;
    let x = this.head;
    let rank = 0;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = fwd(x, i); next !== undefined && before(score, member, next); next = fwd(x, i)) {
        rank += spanOf(x, i);
        x = next;
      }
      update[i] = x;
      ranks[i] = rank;
    }
    const level = node.level;
    if (level > this.level) {
      for (let i = this.level; i < level; i++) {
        ranks[i] = 0;
        update[i] = this.head;
        setSpan(this.head, i, this.length);
      }
      this.level = level;
    }
    const rank0 = ranks[0] as number;
    for (let i = 0; i < level; i++) {
      const prev = update[i] as SkipNode;
      const distance = rank0 - (ranks[i] as number);
      setFwd(node, i, fwd(prev, i));
      setSpan(node, i, spanOf(prev, i) - distance);
      setFwd(prev, i, node);
      setSpan(prev, i, distance + 1);
    }
    for (let i = level; i < this.level; i++) {
      const prev = update[i] as SkipNode;
      setSpan(prev, i, spanOf(prev, i) + 1);
    }
    const prev = update[0] as SkipNode;
    node.backward = prev === this.head ? undefined : prev;
    const next = fwd(node, 0);
    if (next !== undefined) next.backward = node;
    else this.tail = node;
    this.length++;
    return node;
  }

  /** Unlink `node`, `update` holding its predecessors at every level. */
  #unlink(node: SkipNode): void {
    for (let i = 0; i < this.level; i++) {
      const prev = update[i] as SkipNode;
      if (fwd(prev, i) === node) {
        setSpan(prev, i, spanOf(prev, i) + spanOf(node, i) - 1);
        setFwd(prev, i, fwd(node, i));
      } else setSpan(prev, i, spanOf(prev, i) - 1);
    }
    const next = fwd(node, 0);
    if (next !== undefined) next.backward = node.backward;
    else this.tail = node.backward;
    while (this.level > 1 && fwd(this.head, this.level - 1) === undefined) this.level--;
    this.length--;
  }

  /** Fill `update` with the predecessors of (score, member); return the node at that place, if any. */
  #find(score: number, member: string): SkipNode | undefined {
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = fwd(x, i); next !== undefined && before(score, member, next); next = fwd(x, i)) x = next;
      update[i] = x;
    }
    const node = fwd(x, 0);
    return node !== undefined && node.score === score && node.member === member ? node : undefined;
  }

  delete(score: number, member: string): boolean {
    const node = this.#find(score, member);
    if (node === undefined) return false;
    this.#unlink(node);
    return true;
  }

  /**
   * Move an element to a new score (Redis's zslUpdateScore): in place when it keeps its position,
   * else unlinked and linked again at its new place (the same node, keeping its level: a level is
   * drawn independently of the score, so the list's shape stays as random as Redis's).
   */
  updateScore(score: number, member: string, newScore: number): void {
    const node = this.#find(score, member);
    if (node === undefined) {
      this.insert(newScore, member);
      return;
    }
    const next = fwd(node, 0);
    if ((node.backward === undefined || node.backward.score < newScore) && (next === undefined || next.score > newScore)) {
      node.score = newScore;
      return;
    }
    this.#unlink(node);
    node.score = newScore;
    node.backward = undefined;
    this.#link(node);
  }

  /** 1-based rank of an element known to be in the list. */
  rank(score: number, member: string): number {
    let rank = 0;
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (
        let next = fwd(x, i);
        next !== undefined && (before(score, member, next) || (next.score === score && next.member === member));
        next = fwd(x, i)
      ) {
        rank += spanOf(x, i);
        x = next;
      }
      if (x !== this.head && x.member === member) return rank;
    }
    return 0;
  }

  /** The node at a 1-based rank. */
  byRank(rank: number): SkipNode | undefined {
    let traversed = 0;
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = fwd(x, i); next !== undefined && traversed + spanOf(x, i) <= rank; next = fwd(x, i)) {
        traversed += spanOf(x, i);
        x = next;
      }
      if (traversed === rank) return x === this.head ? undefined : x;
    }
    return undefined;
  }

  /** The first node for which `below(node)` (a prefix predicate) is false. */
  firstWhere(below: (node: SkipNode) => boolean): SkipNode | undefined {
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = fwd(x, i); next !== undefined && below(next); next = fwd(x, i)) x = next;
    }
    return fwd(x, 0);
  }

  /** The last node for which `within(node)` holds (a prefix predicate). */
  lastWhere(within: (node: SkipNode) => boolean): SkipNode | undefined {
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = fwd(x, i); next !== undefined && within(next); next = fwd(x, i)) x = next;
    }
    return x === this.head ? undefined : x;
  }
}

/** A sorted set. */
export class SortedSet {
  readonly scores = new Map<string, number>();
  readonly #list = new SkipList();

  get size(): number {
    return this.scores.size;
  }

  score(member: string): number | undefined {
    return this.scores.get(member);
  }

  /** Add or move a member. A score of -0 is kept as 0, as Redis's compact encoding does. */
  set(member: string, score: number): void {
    if (score === 0) score = 0;
    const current = this.scores.get(member);
    if (current === score) return;
    this.scores.set(member, score);
    if (current === undefined) this.#list.insert(score, member);
    else this.#list.updateScore(current, member, score);
  }

  /** `set` for a caller that has just read the member's score (`current`, undefined if absent): one Map lookup fewer. */
  setKnown(member: string, current: number | undefined, score: number): void {
    if (score === 0) score = 0;
    if (current === score) return;
    this.scores.set(member, score);
    if (current === undefined) this.#list.insert(score, member);
    else this.#list.updateScore(current, member, score);
  }

  delete(member: string): boolean {
    const score = this.scores.get(member);
    if (score === undefined) return false;
    this.scores.delete(member);
    this.#list.delete(score, member);
    return true;
  }

  /** 0-based rank from the lowest score, or undefined. */
  rank(member: string): number | undefined {
    const score = this.scores.get(member);
    return score === undefined ? undefined : this.#list.rank(score, member) - 1;
  }

  /** The node at a 0-based rank. */
  at(rank: number): SkipNode | undefined {
    return rank < 0 || rank >= this.size ? undefined : this.#list.byRank(rank + 1);
  }

  get first(): SkipNode | undefined {
    return fwd(this.#list.head, 0);
  }

  get last(): SkipNode | undefined {
    return this.#list.tail;
  }

  /** The first (lowest) node in a score range. */
  firstInRange(range: ScoreRange): SkipNode | undefined {
    if (emptyScoreRange(range)) return undefined;
    const node = this.#list.firstWhere((n) => !gteMin(n.score, range));
    return node && lteMax(node.score, range) ? node : undefined;
  }

  /** The last (highest) node in a score range. */
  lastInRange(range: ScoreRange): SkipNode | undefined {
    if (emptyScoreRange(range)) return undefined;
    const node = this.#list.lastWhere((n) => lteMax(n.score, range));
    return node && gteMin(node.score, range) ? node : undefined;
  }

  // Lex ranges assume equal scores; with mixed scores the answer depends on how the search runs.
  // Small sets (Redis's listpack encoding, up to 128 members) scan linearly as Redis does there,
  // so even then the replies are Redis's; large ones descend the skip list, as Redis does.

  /** The first node in a lex range (Redis's zzlFirstInLexRange / zslFirstInLexRange). */
  firstInLex(range: LexRange): SkipNode | undefined {
    if (!this.#mayHaveLex(range)) return undefined;
    if (this.size <= LINEAR) {
      for (const node of this.walk(this.first)) if (lexGteMin(node.member, range)) return lexLteMax(node.member, range) ? node : undefined;
      return undefined;
    }
    const node = this.#list.firstWhere((n) => !lexGteMin(n.member, range));
    return node && lexLteMax(node.member, range) ? node : undefined;
  }

  /** The last node in a lex range. */
  lastInLex(range: LexRange): SkipNode | undefined {
    if (!this.#mayHaveLex(range)) return undefined;
    if (this.size <= LINEAR) {
      for (const node of this.walk(this.last, true))
        if (lexLteMax(node.member, range)) return lexGteMin(node.member, range) ? node : undefined;
      return undefined;
    }
    const node = this.#list.lastWhere((n) => lexLteMax(n.member, range));
    return node && lexGteMin(node.member, range) ? node : undefined;
  }

  /** Redis's zslIsInLexRange: not an empty range, the last member ≥ min and the first ≤ max. */
  #mayHaveLex(range: LexRange): boolean {
    const [first, last] = [this.first, this.last];
    return (
      !emptyLexRange(range) && first !== undefined && last !== undefined && lexGteMin(last.member, range) && lexLteMax(first.member, range)
    );
  }

  /** 0-based rank of a node in the set. */
  rankOf(node: SkipNode): number {
    return this.#list.rank(node.score, node.member) - 1;
  }

  /** Nodes from `node` on, forwards (or backwards with `reverse`). */
  *walk(node: SkipNode | undefined, reverse = false): Generator<SkipNode> {
    for (let x = node; x; x = reverse ? x.backward : fwd(x, 0)) yield x;
  }

  /** Every member and score, lowest first. */
  *entries(): Generator<[string, number]> {
    for (const node of this.walk(this.first)) yield [node.member, node.score];
  }

  clone(): SortedSet {
    const copy = new SortedSet();
    for (const [member, score] of this.entries()) copy.set(member, score);
    return copy;
  }
}
