/**
 * Redis's glob-style matching (util.c, stringmatchlen), used by PSUBSCRIBE, KEYS and SCAN MATCH (in
 * `@portbind/resp`) and by the bus's pattern subscriptions, so that a pattern matches the same everywhere:
 * `*` any run, `?` one byte, `[abc]`, `[^a-z]` classes, `\x` a literal x. Matching is on bytes
 * (latin1 strings), case-sensitive. Iterative with backtracking on the last `*`, so a hostile
 * pattern cannot make it recurse deeply. As Redis since the fix of CVE-2024-31228 (in Debian's
 * 7.0.15 too), a pattern that would nest more than 1000 `*` matches nothing.
 */
export function globMatch(pattern: string, text: string): boolean {
  if (tooManyStars(pattern)) return false;
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (p < pattern.length) {
      const c = pattern[p];
      if (c === '*') {
        while (pattern[p + 1] === '*') p++;
        starP = p++;
        starT = t;
        continue;
      }
      if (c === '?') {
        p++;
        t++;
        continue;
      }
      if (c === '[') {
        const end = classEnd(pattern, p);
        if (matchClass(pattern, p + 1, end, text[t] as string)) {
          p = end + 1;
          t++;
          continue;
        }
      } else {
        let literal = c;
        let width = 1;
        if (c === '\\' && p + 1 < pattern.length) {
          literal = pattern[p + 1];
          width = 2;
        }
        if (literal === text[t]) {
          p += width;
          t++;
          continue;
        }
      }
    }
    if (starP === -1) return false;
    p = starP + 1;
    t = ++starT;
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/** Index of the `]` closing the class opened at `open` (or the pattern's last index). */
function classEnd(pattern: string, open: number): number {
  let i = open + 1;
  if (pattern[i] === '^') i++;
  while (i < pattern.length && pattern[i] !== ']') {
    if (pattern[i] === '\\' && i + 1 < pattern.length) i++;
    i++;
  }
  return Math.min(i, pattern.length - 1);
}

function matchClass(pattern: string, start: number, end: number, ch: string): boolean {
  let i = start;
  let negate = false;
  if (pattern[i] === '^') {
    negate = true;
    i++;
  }
  let matched = false;
  while (i < end) {
    if (pattern[i] === '\\' && i + 1 < end) {
      if (pattern[i + 1] === ch) matched = true;
      i += 2;
    } else if (i + 2 < end && pattern[i + 1] === '-') {
      let lo = pattern[i] as string;
      let hi = pattern[i + 2] as string;
      if (lo > hi) [lo, hi] = [hi, lo];
      if (ch >= lo && ch <= hi) matched = true;
      i += 3;
    } else {
      if (pattern[i] === ch) matched = true;
      i++;
    }
  }
  return negate ? !matched : matched;
}

/**
 * Redis's nesting limit: its matcher recurses once per run of `*` and gives up past 1000 levels, so
 * a pattern with more than 1000 runs of `*` (escaped ones and ones in classes are literals) never
 * matches — the text cannot run out before the last run, as literals separate the runs.
 */
function tooManyStars(pattern: string): boolean {
  let runs = 0;
  let inRun = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    const star = c === '*';
    if (c === '\\') i++;
    else if (c === '[') i = classEnd(pattern, i);
    else if (star && !inRun && ++runs > 1000) return true;
    inRun = star;
  }
  return false;
}
