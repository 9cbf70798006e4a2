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

interface Level {
  forward: SkipNode | undefined;
  /** How many nodes this link skips (Redis's span): the rank distance to `forward`. */
  span: number;
}

export interface SkipNode {
  readonly member: string;
  readonly score: number;
  backward: SkipNode | undefined;
  readonly levels: Level[];
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

class SkipList {
  readonly head: SkipNode = {
    member: '',
    score: 0,
    backward: undefined,
    levels: Array.from({ length: MAX_LEVEL }, () => ({ forward: undefined, span: 0 })),
  };
  tail: SkipNode | undefined;
  length = 0;
  level = 1;

  #randomLevel(): number {
    let level = 1;
    while (Math.random() < P && level < MAX_LEVEL) level++;
    return level;
  }

  insert(score: number, member: string): SkipNode {
    const update: SkipNode[] = new Array(MAX_LEVEL);
    const rank: number[] = new Array(MAX_LEVEL).fill(0);
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      rank[i] = i === this.level - 1 ? 0 : (rank[i + 1] as number);
      for (let next = x.levels[i]?.forward; next && before(score, member, next); next = x.levels[i]?.forward) {
        rank[i] = (rank[i] as number) + (x.levels[i] as Level).span;
        x = next;
      }
      update[i] = x;
    }
    const level = this.#randomLevel();
    if (level > this.level) {
      for (let i = this.level; i < level; i++) {
        rank[i] = 0;
        update[i] = this.head;
        (this.head.levels[i] as Level).span = this.length;
      }
      this.level = level;
    }
    const node: SkipNode = { member, score, backward: undefined, levels: [] };
    for (let i = 0; i < level; i++) {
      const prev = (update[i] as SkipNode).levels[i] as Level;
      const distance = (rank[0] as number) - (rank[i] as number);
      node.levels.push({ forward: prev.forward, span: prev.span - distance });
      prev.forward = node;
      prev.span = distance + 1;
    }
    for (let i = level; i < this.level; i++) ((update[i] as SkipNode).levels[i] as Level).span++;
    node.backward = update[0] === this.head ? undefined : update[0];
    const next = (node.levels[0] as Level).forward;
    if (next) next.backward = node;
    else this.tail = node;
    this.length++;
    return node;
  }

  #unlink(node: SkipNode, update: SkipNode[]): void {
    for (let i = 0; i < this.level; i++) {
      const link = (update[i] as SkipNode).levels[i] as Level;
      if (link.forward === node) {
        link.span += (node.levels[i] as Level).span - 1;
        link.forward = (node.levels[i] as Level).forward;
      } else link.span--;
    }
    const next = (node.levels[0] as Level).forward;
    if (next) next.backward = node.backward;
    else this.tail = node.backward;
    while (this.level > 1 && (this.head.levels[this.level - 1] as Level).forward === undefined) this.level--;
    this.length--;
  }

  delete(score: number, member: string): boolean {
    const update: SkipNode[] = new Array(MAX_LEVEL);
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = x.levels[i]?.forward; next && before(score, member, next); next = x.levels[i]?.forward) x = next;
      update[i] = x;
    }
    const node = (x.levels[0] as Level).forward;
    if (node === undefined || node.score !== score || node.member !== member) return false;
    this.#unlink(node, update);
    return true;
  }

  /** 1-based rank of an element known to be in the list. */
  rank(score: number, member: string): number {
    let rank = 0;
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (
        let next = x.levels[i]?.forward;
        next && (before(score, member, next) || (next.score === score && next.member === member));
        next = x.levels[i]?.forward
      ) {
        rank += (x.levels[i] as Level).span;
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
      for (let next = x.levels[i]?.forward; next && traversed + (x.levels[i] as Level).span <= rank; next = x.levels[i]?.forward) {
        traversed += (x.levels[i] as Level).span;
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
      for (let next = x.levels[i]?.forward; next && below(next); next = x.levels[i]?.forward) x = next;
    }
    return (x.levels[0] as Level).forward;
  }

  /** The last node for which `within(node)` holds (a prefix predicate). */
  lastWhere(within: (node: SkipNode) => boolean): SkipNode | undefined {
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      for (let next = x.levels[i]?.forward; next && within(next); next = x.levels[i]?.forward) x = next;
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
    if (current !== undefined) {
      if (current === score) return;
      this.#list.delete(current, member);
    }
    this.scores.set(member, score);
    this.#list.insert(score, member);
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
    return this.#list.head.levels[0]?.forward;
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
    for (let x = node; x; x = reverse ? x.backward : x.levels[0]?.forward) yield x;
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
