// CONFIG GET/SET parameters. Each file that has parameters adds them to `server.config` (a Map
// from the lowercase name to a Setting) with the constructors below, which give Redis's checks and
// error texts; CONFIG SET's "argument …" reason is the Error's message.

/** A CONFIG parameter: how to read it, and how to change it (absent: immutable). */
export interface Setting {
  get(): string;
  set?(value: string): void;
}

/** The parameters, by lowercase name. */
export type Config = Map<string, Setting>;

/** INFO's sections, in the order INFO lists them: each gives its fields. */
export type InfoSections = Map<string, () => Record<string, string | number>>;

/** A parameter that cannot change. */
export const fixed = (value: () => string | number): Setting => ({ get: () => String(value()) });
/** An integer setting with Redis's range check and error texts. */
export const integer = (min: number, max: number | bigint, get: () => number, set: (value: number) => void): Setting => ({
  get: () => String(get()),
  set(value) {
    if (!/^-?\d+$/.test(value)) throw new Error("argument couldn't be parsed into an integer");
    const number = Number(value);
    if (number < min || BigInt(value) > BigInt(max)) throw new Error(`argument must be between ${min} and ${max} inclusive`);
    set(number);
  },
});
/** A size in bytes as Redis's memtoull reads it: `64`, `1k`, `1kb`, `2mb`, `1gb` (any case). */
export const memory = (min: number, get: () => number, set: (value: number) => void): Setting => ({
  get: () => String(get()),
  set(value) {
    const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(value);
    if (match === null) throw new Error('argument must be a memory value');
    const units: Record<string, number> = { b: 1, k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
    const number = Number(match[1]) * (units[(match[2] ?? 'b').toLowerCase()] ?? 1);
    if (number < min) throw new Error(`argument must be between ${min} and 9223372036854775807 inclusive`);
    set(number);
  },
});
/** A parameter Redis can change and mini-redis cannot: setting its present value is a no-op. */
export const current = (value: () => string | number, reason: string): Setting => ({
  get: () => String(value()),
  set(next) {
    if (next !== String(value())) throw new Error(reason);
  },
});
/** A parameter mini-redis can only have at one value: setting that value is a no-op. */
export const only = (value: string, reason: string): Setting => ({
  get: () => value,
  set(next) {
    if (next !== value) throw new Error(reason);
  },
});

/** A yes/no parameter, with Redis's error text. */
export const yesNo = (get: () => boolean, set: (value: boolean) => void): Setting => ({
  get: () => (get() ? 'yes' : 'no'),
  set(value) {
    const lower = value.toLowerCase();
    if (lower !== 'yes' && lower !== 'no') throw new Error("argument must be 'yes' or 'no'");
    set(lower === 'yes');
  },
});
