// Geohashes as Redis 7.0 computes them (geohash.c, geohash_helper.c): 52-bit interleaved
// latitude/longitude cells over latitudes ±85.05112878 (what Web Mercator covers), the cells
// around a search area, and the haversine distance on a sphere of Redis's radius.

export const LONG_MIN = -180;
export const LONG_MAX = 180;
export const LAT_MIN = -85.05112878;
export const LAT_MAX = 85.05112878;
/** Bits per coordinate of a stored score. */
export const STEP_MAX = 26;

const EARTH_RADIUS_IN_METERS = 6372797.560856;
const MERCATOR_MAX = 20037726.37;
const D_R = Math.PI / 180.0;
const U64 = (1n << 64n) - 1n;

const degRad = (angle: number): number => angle * D_R;
const radDeg = (angle: number): number => angle / D_R;

/** A cell: its interleaved bits (latitude in the even bits) and its precision; step 0 is "no cell". */
export interface GeoHash {
  bits: bigint;
  step: number;
}

export interface Range {
  readonly min: number;
  readonly max: number;
}

export interface Area {
  readonly longitude: Range;
  readonly latitude: Range;
}

export const MERCATOR_LONG: Range = { min: LONG_MIN, max: LONG_MAX };
export const MERCATOR_LAT: Range = { min: LAT_MIN, max: LAT_MAX };

/** Spread the bits of a 32-bit value into the even bits of 64 (geohash.c's interleave64 masks). */
function spread(value: bigint): bigint {
  let v = value & 0xffffffffn;
  v = (v | (v << 16n)) & 0x0000ffff0000ffffn;
  v = (v | (v << 8n)) & 0x00ff00ff00ff00ffn;
  v = (v | (v << 4n)) & 0x0f0f0f0f0f0f0f0fn;
  v = (v | (v << 2n)) & 0x3333333333333333n;
  v = (v | (v << 1n)) & 0x5555555555555555n;
  return v;
}

/** A C double → uint32_t conversion of a non-negative offset (truncation; 2^32 and above wrap as x86 does not matter here). */
const toUint32 = (value: number): bigint => BigInt(Math.trunc(value)) & 0xffffffffn;

/** geohashEncode: undefined where Redis's returns 0. */
export function encode(longRange: Range, latRange: Range, longitude: number, latitude: number, step: number): GeoHash | undefined {
  if (longitude > LONG_MAX || longitude < LONG_MIN || latitude > LAT_MAX || latitude < LAT_MIN) return undefined;
  if (latitude < latRange.min || latitude > latRange.max || longitude < longRange.min || longitude > longRange.max) return undefined;
  const scale = 2 ** step;
  const latOffset = ((latitude - latRange.min) / (latRange.max - latRange.min)) * scale;
  const longOffset = ((longitude - longRange.min) / (longRange.max - longRange.min)) * scale;
  return { bits: (spread(toUint32(latOffset)) | (spread(toUint32(longOffset)) << 1n)) & U64, step };
}

/** The score GEOADD stores for a point (geohashAlign52Bits of the step-26 cell). */
export function scoreOf(longitude: number, latitude: number): number {
  const hash = encode(MERCATOR_LONG, MERCATOR_LAT, longitude, latitude, STEP_MAX) as GeoHash;
  return Number(align52(hash));
}

export const align52 = (hash: GeoHash): bigint => (hash.bits << BigInt(52 - hash.step * 2)) & U64;

/** Even bits of a 32-bit number, packed into 16. */
function compact(value: number): number {
  let v = value & 0x55555555;
  v = (v | (v >>> 1)) & 0x33333333;
  v = (v | (v >>> 2)) & 0x0f0f0f0f;
  v = (v | (v >>> 4)) & 0x00ff00ff;
  v = (v | (v >>> 8)) & 0x0000ffff;
  return v;
}

/** A score as C's (uint64_t) cast sees it: its high and low 32 bits. */
function scoreWords(score: number): [number, number] {
  if (score >= 0 && score < 2 ** 53 && Number.isInteger(score)) return [Math.floor(score / 2 ** 32), score % 2 ** 32];
  let bits: bigint;
  if (!Number.isFinite(score)) bits = 1n << 63n;
  else bits = BigInt.asUintN(64, BigInt(Math.trunc(score)));
  return [Number(bits >> 32n), Number(bits & 0xffffffffn)];
}

/** geohashDecode over the given ranges, of a cell given as 64-bit words. */
function decodeWords(longRange: Range, latRange: Range, hi: number, lo: number, step: number): Area {
  const ilato = (compact(lo) | (compact(hi) << 16)) >>> 0;
  const ilono = (compact(lo >>> 1) | (compact(hi >>> 1) << 16)) >>> 0;
  const cells = 2 ** step;
  const latScale = latRange.max - latRange.min;
  const longScale = longRange.max - longRange.min;
  return {
    latitude: {
      min: latRange.min + ((ilato * 1.0) / cells) * latScale,
      max: latRange.min + ((((ilato + 1) >>> 0) * 1.0) / cells) * latScale,
    },
    longitude: {
      min: longRange.min + ((ilono * 1.0) / cells) * longScale,
      max: longRange.min + ((((ilono + 1) >>> 0) * 1.0) / cells) * longScale,
    },
  };
}

export function decode(hash: GeoHash): Area | undefined {
  if (hash.bits === 0n && hash.step === 0) return undefined;
  return decodeWords(MERCATOR_LONG, MERCATOR_LAT, Number(hash.bits >> 32n), Number(hash.bits & 0xffffffffn), hash.step);
}

/** decodeGeohash: a score's cell center [longitude, latitude], clamped to the valid ranges. */
export function decodeScore(score: number): [number, number] {
  const [hi, lo] = scoreWords(score);
  const area = decodeWords(MERCATOR_LONG, MERCATOR_LAT, hi, lo, STEP_MAX);
  let x = (area.longitude.min + area.longitude.max) / 2;
  if (x > LONG_MAX) x = LONG_MAX;
  if (x < LONG_MIN) x = LONG_MIN;
  let y = (area.latitude.min + area.latitude.max) / 2;
  if (y > LAT_MAX) y = LAT_MAX;
  if (y < LAT_MIN) y = LAT_MIN;
  return [x, y];
}

const EVEN = 0x5555555555555555n;
const ODD = 0xaaaaaaaaaaaaaaaan;

function moveX(hash: GeoHash, d: number): GeoHash {
  if (d === 0) return hash;
  let x = hash.bits & ODD;
  const y = hash.bits & EVEN;
  const zz = EVEN >> BigInt(64 - hash.step * 2);
  if (d > 0) x = (x + (zz + 1n)) & U64;
  else x = BigInt.asUintN(64, (x | zz) - (zz + 1n));
  x &= ODD >> BigInt(64 - hash.step * 2);
  return { bits: x | y, step: hash.step };
}

function moveY(hash: GeoHash, d: number): GeoHash {
  if (d === 0) return hash;
  const x = hash.bits & ODD;
  let y = hash.bits & EVEN;
  const zz = ODD >> BigInt(64 - hash.step * 2);
  if (d > 0) y = (y + (zz + 1n)) & U64;
  else y = BigInt.asUintN(64, (y | zz) - (zz + 1n));
  y &= EVEN >> BigInt(64 - hash.step * 2);
  return { bits: x | y, step: hash.step };
}

export interface Neighbors {
  north: GeoHash;
  south: GeoHash;
  east: GeoHash;
  west: GeoHash;
  northEast: GeoHash;
  northWest: GeoHash;
  southEast: GeoHash;
  southWest: GeoHash;
}

function neighborsOf(hash: GeoHash): Neighbors {
  return {
    east: moveX(hash, 1),
    west: moveX(hash, -1),
    south: moveY(hash, -1),
    north: moveY(hash, 1),
    northWest: moveY(moveX(hash, -1), 1),
    northEast: moveY(moveX(hash, 1), 1),
    southEast: moveY(moveX(hash, 1), -1),
    southWest: moveY(moveX(hash, -1), -1),
  };
}

function estimateStepsByRadius(rangeMeters: number, lat: number): number {
  if (rangeMeters === 0) return 26;
  let range = rangeMeters;
  let step = 1;
  while (range < MERCATOR_MAX) {
    range *= 2;
    step++;
  }
  step -= 2;
  if (lat > 66 || lat < -66) {
    step--;
    if (lat > 80 || lat < -80) step--;
  }
  if (step < 1) step = 1;
  if (step > 26) step = 26;
  return step;
}

/** A search area: a circle (radius) or a box (width × height), in `conversion` units to the meter. */
export type Shape =
  | { readonly type: 'circle'; readonly x: number; readonly y: number; readonly conversion: number; readonly radius: number }
  | {
      readonly type: 'box';
      readonly x: number;
      readonly y: number;
      readonly conversion: number;
      readonly width: number;
      readonly height: number;
    };

const ZERO: GeoHash = { bits: 0n, step: 0 };

/** geohashCalculateAreasByShapeWGS84: the cell around the center and those of its neighbors that may hold matches. */
export function areasByShape(shape: Shape): GeoHash[] {
  const { x: longitude, y: latitude } = shape;
  const height = shape.conversion * (shape.type === 'circle' ? shape.radius : shape.height / 2);
  const width = shape.conversion * (shape.type === 'circle' ? shape.radius : shape.width / 2);
  const latDelta = radDeg(height / EARTH_RADIUS_IN_METERS);
  const longDeltaTop = radDeg(width / EARTH_RADIUS_IN_METERS / Math.cos(degRad(latitude + latDelta)));
  const longDeltaBottom = radDeg(width / EARTH_RADIUS_IN_METERS / Math.cos(degRad(latitude - latDelta)));
  const southern = latitude < 0;
  const minLon = southern ? longitude - longDeltaBottom : longitude - longDeltaTop;
  const maxLon = southern ? longitude + longDeltaBottom : longitude + longDeltaTop;
  const minLat = latitude - latDelta;
  const maxLat = latitude + latDelta;

  let radiusMeters =
    shape.type === 'circle' ? shape.radius : Math.sqrt((shape.width / 2) * (shape.width / 2) + (shape.height / 2) * (shape.height / 2));
  radiusMeters *= shape.conversion;

  let steps = estimateStepsByRadius(radiusMeters, latitude);
  // As Redis: a failed encode leaves the hash zeroed with the step set.
  const encodeAt = (step: number): GeoHash => encode(MERCATOR_LONG, MERCATOR_LAT, longitude, latitude, step) ?? { bits: 0n, step };
  let hash = encodeAt(steps);
  let neighbors = neighborsOf(hash);
  let area = decode(hash);

  let decrease = false;
  const north = decode(neighbors.north);
  const south = decode(neighbors.south);
  const east = decode(neighbors.east);
  const west = decode(neighbors.west);
  if (north !== undefined && north.latitude.max < maxLat) decrease = true;
  if (south !== undefined && south.latitude.min > minLat) decrease = true;
  if (east !== undefined && east.longitude.max < maxLon) decrease = true;
  if (west !== undefined && west.longitude.min > minLon) decrease = true;

  if (steps > 1 && decrease) {
    steps--;
    hash = encodeAt(steps);
    neighbors = neighborsOf(hash);
    area = decode(hash);
  }

  if (steps >= 2 && area !== undefined) {
    if (area.latitude.min < minLat) {
      neighbors.south = ZERO;
      neighbors.southWest = ZERO;
      neighbors.southEast = ZERO;
    }
    if (area.latitude.max > maxLat) {
      neighbors.north = ZERO;
      neighbors.northEast = ZERO;
      neighbors.northWest = ZERO;
    }
    if (area.longitude.min < minLon) {
      neighbors.west = ZERO;
      neighbors.southWest = ZERO;
      neighbors.northWest = ZERO;
    }
    if (area.longitude.max > maxLon) {
      neighbors.east = ZERO;
      neighbors.southEast = ZERO;
      neighbors.northEast = ZERO;
    }
  }
  return [
    hash,
    neighbors.north,
    neighbors.south,
    neighbors.east,
    neighbors.west,
    neighbors.northEast,
    neighbors.northWest,
    neighbors.southEast,
    neighbors.southWest,
  ];
}

/** The scores [min, max) of the members inside a cell (scoresOfGeoHashBox), as C's uint64 → double. */
export function scoresOfBox(hash: GeoHash): [number, number] {
  return [Number(align52(hash)), Number(align52({ bits: (hash.bits + 1n) & U64, step: hash.step }))];
}

export const latDistance = (lat1: number, lat2: number): number => EARTH_RADIUS_IN_METERS * Math.abs(degRad(lat2) - degRad(lat1));

/** geohashGetDistance: haversine, with Redis's shortcut when the longitudes are the same. */
export function distance(lon1d: number, lat1d: number, lon2d: number, lat2d: number): number {
  const lon1r = degRad(lon1d);
  const lon2r = degRad(lon2d);
  const v = Math.sin((lon2r - lon1r) / 2);
  if (v === 0.0) return latDistance(lat1d, lat2d);
  const lat1r = degRad(lat1d);
  const lat2r = degRad(lat2d);
  const u = Math.sin((lat2r - lat1r) / 2);
  const a = u * u + Math.cos(lat1r) * Math.cos(lat2r) * v * v;
  return 2.0 * EARTH_RADIUS_IN_METERS * Math.asin(Math.sqrt(a));
}

/** geoWithinShape for a decoded point: its distance from the center, or undefined outside the shape. */
export function withinShape(shape: Shape, x: number, y: number): number | undefined {
  if (shape.type === 'circle') {
    const d = distance(shape.x, shape.y, x, y);
    return d > shape.radius * shape.conversion ? undefined : d;
  }
  const widthM = shape.width * shape.conversion;
  const heightM = shape.height * shape.conversion;
  if (latDistance(y, shape.y) > heightM / 2) return undefined;
  if (distance(x, y, shape.x, y) > widthM / 2) return undefined;
  return distance(shape.x, shape.y, x, y);
}

const ALPHABET = '0123456789bcdefghjkmnpqrstuvwxyz';

/** GEOHASH's 11 characters: the cell center re-encoded over the standard ±90 latitudes. */
export function standardGeohash(score: number): string {
  const [x, y] = decodeScore(score);
  const hash = encode({ min: -180, max: 180 }, { min: -90, max: 90 }, x, y, 26);
  const bits = hash?.bits ?? 0n;
  let text = '';
  for (let i = 0; i < 11; i++) {
    const index = i === 10 ? 0 : Number((bits >> BigInt(52 - (i + 1) * 5)) & 0x1fn);
    text += ALPHABET[index];
  }
  return text;
}

/** A double's exact decimal value rounded half-to-even to `digits` decimals, as printf's %.<digits>f. */
export function fixed(value: number, digits: number): string {
  if (Number.isNaN(value)) return value < 0 ? '-nan' : 'nan';
  if (!Number.isFinite(value)) return value < 0 ? '-inf' : 'inf';
  const negative = value < 0 || Object.is(value, -0);
  const abs = Math.abs(value);
  // abs = mantissa × 2^exponent exactly.
  let mantissa: bigint;
  let exponent: number;
  if (abs === 0) {
    mantissa = 0n;
    exponent = 0;
  } else {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, abs);
    const high = view.getUint32(0);
    const low = view.getUint32(4);
    const biased = (high >>> 20) & 0x7ff;
    const fraction = (BigInt(high & 0xfffff) << 32n) | BigInt(low);
    if (biased === 0) {
      mantissa = fraction;
      exponent = -1074;
    } else {
      mantissa = fraction | (1n << 52n);
      exponent = biased - 1075;
    }
  }
  const scaledNumerator = mantissa * 10n ** BigInt(digits);
  let units: bigint;
  if (exponent >= 0) units = scaledNumerator << BigInt(exponent);
  else {
    const divisor = 1n << BigInt(-exponent);
    units = scaledNumerator / divisor;
    const remainder = scaledNumerator % divisor;
    const twice = remainder * 2n;
    if (twice > divisor || (twice === divisor && units % 2n === 1n)) units += 1n;
  }
  let text = units.toString().padStart(digits + 1, '0');
  if (digits > 0) text = `${text.slice(0, text.length - digits)}.${text.slice(text.length - digits)}`;
  return negative ? `-${text}` : text;
}

/** addReplyHumanLongDouble's text: "%.17Lf" without trailing zeros (and "-0" as "0"). */
export function humanText(value: number): string {
  let text = fixed(value, 17);
  if (text.includes('.')) {
    text = text.replace(/0+$/, '');
    if (text.endsWith('.')) text = text.slice(0, -1);
  }
  if (text === '-0') text = '0';
  return text;
}

/** fixedpoint_d2string(…, 4): llrint of the value × 10^4, printed with 4 decimals. */
export function distanceText(value: number): string {
  if (value === 0) return '0.0000';
  const scaled = value * 10000;
  let rounded = Math.round(scaled);
  if (rounded - scaled === 0.5 && rounded % 2 !== 0) rounded -= 1;
  const negative = rounded < 0;
  const digits = BigInt(Math.abs(rounded)).toString().padStart(5, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -4)}.${digits.slice(-4)}`;
}
