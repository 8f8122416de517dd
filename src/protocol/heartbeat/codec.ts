// Heartbeat payload, version 2: what a host says about itself about once a second, with everything the
// auction needs to place and price a task on it. JSON, at most 16 KiB, every field bounded and checked.

export const HEARTBEAT_VERSION = 2
export const MAX_HEARTBEAT_BYTES = 16 * 1024

/** Speed bounds (work units per second; 1.0 = the reference machine): never 0, never absurd. */
export const MIN_SPEED = 0.01
export const MAX_SPEED = 1000
/** Upper bound for any power figure, in watts (a large multi-GPU server is ~10 kW). */
export const MAX_WATTS = 100_000
/** Upper bound for a price per kWh, in any currency (covers currencies with large units). */
export const MAX_PRICE = 1_000_000
export const MAX_TAGS = 32
/** A tag: short, no spaces or commas (`--tags a,b` splits on commas). */
export const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:=+-]{0,31}$/
/** An ISO 4217-style currency code. */
export const CURRENCY_PATTERN = /^[A-Z]{3}$/
/** A time of day: 00:00 to 23:59, and 24:00 (only as a window's end). */
export const TIME_PATTERN = /^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$/
/** Longest run time a running task may report (a year), in ms. */
export const MAX_TASK_MS = 365 * 24 * 3600 * 1000

export interface RunningTask {
  readonly job: string
  readonly task: number
  readonly attempt: number
  /** Whole ms since it started, as of this heartbeat (the sender's clock; no wall time crosses). */
  readonly startedMsAgo: number
  /** Its whole expected run time in ms on this host; null: no estimate. */
  readonly expectedMs: number | null
  /** How far along it is, 0..1, as its application reports it (absent: the app reports nothing). */
  readonly progress?: number
  /** The frame it is rendering now, when it renders frames. */
  readonly frame?: number
}

export interface HostApp {
  readonly name: string
  readonly version: string | null
  /**
   * How many times faster than its CPU this host runs the app on its best GPU, as its self-test
   * measured (absent: CPU only). A job that does not insist on the CPU gets the faster speed.
   */
  readonly gpuSpeedup?: number
}

export interface Gpu {
  readonly name: string
  readonly memoryMb: number
}

/** An enabled application that failed detection or its self-test, and why. */
export interface AppUnavailable {
  readonly name: string
  readonly reason: string
}

export type SpeedSource = 'benchmark' | 'config' | 'tasks'
const SPEED_SOURCES: readonly SpeedSource[] = ['benchmark', 'config', 'tasks']

/**
 * A weekly window in the host's local time. days: 0 = Sunday .. 6 = Saturday (Date#getDay), the days
 * the window starts on. from < to: that day from `from` until `to`; from > to: across midnight, into
 * the next day. `to` may be '24:00'; from === to is refused (use 00:00-24:00 for a whole day).
 */
export interface WeeklyWindow {
  readonly days: readonly number[]
  readonly from: string
  readonly to: string
}

export interface Availability {
  readonly windows: readonly WeeklyWindow[]
  /** Whether the host is inside one of its windows now, computed by the sender. */
  readonly available: boolean
}

/** A host's announcement; the sender's identity is the gossip signature, never a field. */
export interface Heartbeat {
  readonly v: typeof HEARTBEAT_VERSION
  readonly name: string
  /** Sender's counter: a restarted sender starts again at 0. */
  readonly seq: number
  readonly slots: number
  readonly free: number
  readonly running: readonly RunningTask[]
  readonly cores: number
  readonly memoryMb: number
  readonly gpus: readonly Gpu[]
  readonly apps: readonly HostApp[]
  readonly tags: readonly string[]
  /** Work units per second, MIN_SPEED to MAX_SPEED; 1.0 = the reference machine. */
  readonly speed: number
  readonly speedSource: SpeedSource
  readonly wattsIdle: number
  /** At least wattsIdle. */
  readonly wattsLoaded: number
  /** Price of electricity per kWh; null: unknown (the farm's median counts). */
  readonly price: number | null
  /** Currency of the price; null: unspecified (the farm's usual one). */
  readonly currency: string | null
  /** null: always available. */
  readonly availability: Availability | null
  readonly appsUnavailable: readonly AppUnavailable[]
}

export class InvalidHeartbeatError extends Error {
  static override readonly name: string = 'InvalidHeartbeatError'
  override readonly name: string = 'InvalidHeartbeatError'
}

/** A heartbeat of another version: a peer running another release, not necessarily a hostile one. */
export class UnsupportedHeartbeatVersionError extends InvalidHeartbeatError {
  static override readonly name = 'UnsupportedHeartbeatVersionError'
  override readonly name: string = 'UnsupportedHeartbeatVersionError'
}

/** Encodes and checks: a heartbeat this node sends passes the same checks its peers apply. */
export function encodeHeartbeat(hb: Heartbeat): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(hb))
  decodeHeartbeat(bytes)
  return bytes
}

/** How a reader reports a bad field; the heartbeat and the host config each pass their own. */
export type Fail = (field: string, problem: string) => never

const failHb: Fail = (field, problem) => {
  throw new InvalidHeartbeatError(`heartbeat field ${field} ${problem}`)
}

export const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)

export function readInt(x: unknown, field: string, lo: number, hi: number, fail: Fail = failHb): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < lo || x > hi) {
    fail(field, `must be a whole number from ${lo} to ${hi} (got ${show(x)})`)
  }
  return x
}

/** A finite number in (0, hi] when positive, else in [0, hi]. */
export function readNumber(
  x: unknown,
  field: string,
  hi: number,
  positive: boolean,
  fail: Fail = failHb,
): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x > hi || (positive ? x <= 0 : x < 0)) {
    fail(field, `must be a ${positive ? 'positive' : 'non-negative'} number up to ${hi} (got ${show(x)})`)
  }
  return x
}

export function readText(x: unknown, field: string, max: number, fail: Fail = failHb): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > max) {
    fail(field, `must be a non-empty string of at most ${max} characters (got ${show(x)})`)
  }
  return x
}

export function readList<T>(
  x: unknown,
  field: string,
  max: number,
  item: (x: unknown, field: string) => T,
  fail: Fail = failHb,
): T[] {
  if (!Array.isArray(x) || x.length > max) fail(field, `must be a list of at most ${max} entries`)
  return x.map((e, i) => item(e, `${field}[${i}]`))
}

const readObject = (x: unknown, field: string, fail: Fail = failHb): Record<string, unknown> =>
  isObject(x) ? x : fail(field, 'must be an object')

export function readTags(x: unknown, field: string, fail: Fail = failHb): string[] {
  const tags = readList(x, field, MAX_TAGS, (t, f) => readPattern(t, f, TAG_PATTERN, 'a tag', fail), fail)
  unique(tags, field, fail)
  return tags
}

export function readPattern(
  x: unknown,
  field: string,
  re: RegExp,
  what: string,
  fail: Fail = failHb,
): string {
  if (typeof x !== 'string' || !re.test(x)) fail(field, `must be ${what} matching ${re} (got ${show(x)})`)
  return x
}

/** Minutes since midnight of a valid 'HH:MM'. */
export const minutesOf = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))

export function readWindow(x: unknown, field: string, fail: Fail = failHb): WeeklyWindow {
  const o = readObject(x, field, fail)
  const days = readList(o.days, `${field}.days`, 7, (d, f) => readInt(d, f, 0, 6, fail), fail)
  if (days.length === 0) fail(`${field}.days`, 'must name at least one day (0 = Sunday .. 6 = Saturday)')
  unique(days, `${field}.days`, fail)
  const time = /^(?:[01]\d|2[0-3]):[0-5]\d$/
  const from = readPattern(o.from, `${field}.from`, time, "a time 'HH:MM'", fail)
  const to = readPattern(o.to, `${field}.to`, TIME_PATTERN, "a time 'HH:MM'", fail)
  if (from === to) fail(`${field}.to`, `equals from (${from}); for a whole day use 00:00 to 24:00`)
  return { days, from, to }
}

const nameOf = (x: { name: string }): string => x.name

function unique(xs: readonly unknown[], field: string, fail: Fail): void {
  if (new Set(xs).size !== xs.length) fail(field, 'has duplicate entries')
}

/** A value for an error message; never calls into the value (a peer's `{"toString": 1}` is data). */
const show = (x: unknown): string => {
  if (typeof x === 'object' && x !== null) return Array.isArray(x) ? 'a list' : 'an object'
  const s = typeof x === 'string' ? JSON.stringify(x) : String(x)
  return s.length > 40 ? `${s.slice(0, 40)}...` : s
}

const nullOr = <T>(x: unknown, read: (x: unknown) => T): T | null => (x === null ? null : read(x))

export function decodeHeartbeat(data: Uint8Array): Heartbeat {
  if (data.byteLength > MAX_HEARTBEAT_BYTES) {
    throw new InvalidHeartbeatError(`heartbeat too large: ${data.byteLength} > ${MAX_HEARTBEAT_BYTES} bytes`)
  }
  let x: unknown
  try {
    x = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch (err) {
    throw new InvalidHeartbeatError('heartbeat is not JSON', { cause: err })
  }
  if (!isObject(x)) throw new InvalidHeartbeatError('heartbeat is not an object')
  const h = x
  if (h.v !== HEARTBEAT_VERSION) {
    throw new UnsupportedHeartbeatVersionError(
      `heartbeat version ${show(h.v)} is not supported: this node speaks version ${HEARTBEAT_VERSION}`,
    )
  }
  const slots = readInt(h.slots, 'slots', 0, 1024)
  const running = readList(h.running, 'running', 1024, (r, f) => {
    const o = readObject(r, f)
    return {
      job: readText(o.job, `${f}.job`, 64),
      task: readInt(o.task, `${f}.task`, 0, 1e6),
      attempt: readInt(o.attempt, `${f}.attempt`, 0, 1e4),
      startedMsAgo: readInt(o.startedMsAgo, `${f}.startedMsAgo`, 0, MAX_TASK_MS),
      expectedMs: nullOr(o.expectedMs, (e) => readInt(e, `${f}.expectedMs`, 0, MAX_TASK_MS)),
      ...(o.progress === undefined ? {} : { progress: readNumber(o.progress, `${f}.progress`, 1, false) }),
      ...(o.frame === undefined ? {} : { frame: readInt(o.frame, `${f}.frame`, -1e6, 1e6) }),
    }
  })
  const apps = readList(h.apps, 'apps', 64, (a, f) => {
    const o = readObject(a, f)
    const version = nullOr(o.version, (v) => readText(v, `${f}.version`, 64))
    const name = readText(o.name, `${f}.name`, 64)
    if (o.gpuSpeedup === undefined) return { name, version }
    return { name, version, gpuSpeedup: readNumber(o.gpuSpeedup, `${f}.gpuSpeedup`, 1000, true) }
  })
  unique(apps.map(nameOf), 'apps', failHb)
  const appsUnavailable = readList(h.appsUnavailable, 'appsUnavailable', 64, (a, f) => {
    const o = readObject(a, f)
    return { name: readText(o.name, `${f}.name`, 64), reason: readText(o.reason, `${f}.reason`, 200) }
  })
  const wattsIdle = readNumber(h.wattsIdle, 'wattsIdle', MAX_WATTS, true)
  const wattsLoaded = readNumber(h.wattsLoaded, 'wattsLoaded', MAX_WATTS, true)
  if (wattsLoaded < wattsIdle) failHb('wattsLoaded', `must be at least wattsIdle (${wattsIdle})`)
  const speed = readNumber(h.speed, 'speed', MAX_SPEED, true)
  if (speed < MIN_SPEED) failHb('speed', `must be at least ${MIN_SPEED} (got ${speed})`)
  if (!SPEED_SOURCES.includes(h.speedSource as SpeedSource)) {
    failHb('speedSource', `must be one of ${SPEED_SOURCES.join(', ')} (got ${show(h.speedSource)})`)
  }
  const availability = nullOr(h.availability, (a) => {
    const o = readObject(a, 'availability')
    const windows = readList(o.windows, 'availability.windows', 32, (w, f) => readWindow(w, f))
    if (typeof o.available !== 'boolean') failHb('availability.available', 'must be true or false')
    return { windows, available: o.available }
  })
  return {
    v: HEARTBEAT_VERSION,
    name: readText(h.name, 'name', 100),
    seq: readInt(h.seq, 'seq', 0, Number.MAX_SAFE_INTEGER),
    slots,
    free: readInt(h.free, 'free', 0, slots),
    running,
    cores: readInt(h.cores, 'cores', 0, 4096),
    memoryMb: readInt(h.memoryMb, 'memoryMb', 0, 2 ** 30),
    gpus: readList(h.gpus, 'gpus', 16, (g, f) => {
      const o = readObject(g, f)
      return {
        name: readText(o.name, `${f}.name`, 100),
        memoryMb: readInt(o.memoryMb, `${f}.memoryMb`, 0, 2 ** 30),
      }
    }),
    apps,
    tags: readTags(h.tags, 'tags'),
    speed,
    speedSource: h.speedSource as SpeedSource,
    wattsIdle,
    wattsLoaded,
    price: nullOr(h.price, (p) => readNumber(p, 'price', MAX_PRICE, false)),
    currency: nullOr(h.currency, (c) => readPattern(c, 'currency', CURRENCY_PATTERN, 'a currency code')),
    availability,
    appsUnavailable,
  }
}
