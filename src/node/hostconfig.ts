// The host's own config file: what a host announces about itself that it cannot measure (name, slots,
// tags, power draw, electricity price, when it is available, which apps it runs), merged with `join`'s
// flags and defaults into the settings the node announces in its heartbeat.

import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Availability, Fail, Gpu, WeeklyWindow } from '../protocol/heartbeat/codec.ts'
import * as wire from '../protocol/heartbeat/codec.ts'
import { defaultConfigDir } from './paths.ts'

export const MAX_HOST_CONFIG_BYTES = 64 * 1024
export const MAX_SLOTS = 1024
const APP_NAME = /^[a-z][a-z0-9_-]{0,63}$/
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']

/** The file as written; absent (or undefined) keys were not given. `_comment` keys anywhere are ignored. */
export interface HostConfig {
  readonly name?: string
  readonly slots?: number
  readonly tags?: readonly string[]
  readonly watts?: { readonly idle?: number; readonly loaded?: number }
  readonly price?: { readonly perKwh?: number | null; readonly currency?: string | null }
  /** Weekly windows in local time; null or absent: always available. */
  readonly availability?: readonly WeeklyWindow[] | null
  readonly apps?: { readonly enable?: readonly string[]; readonly disable?: readonly string[] }
  /** GPUs to announce (nothing detects them yet). */
  readonly gpus?: readonly Gpu[]
  /** A fixed speed instead of the benchmark (tests, or owners who know better). */
  readonly speed?: number
}

/** `openfarm join`'s flags, as parsed (strings): they override the file. */
export interface HostFlags {
  readonly name?: string
  readonly slots?: string
  /** Comma-separated; '' clears the file's tags. */
  readonly tags?: string
  readonly wattsIdle?: string
  readonly wattsLoaded?: string
  readonly price?: string
  readonly currency?: string
  readonly speed?: string
  readonly enableApps?: readonly string[]
  readonly disableApps?: readonly string[]
}

export interface Machine {
  readonly cores: number
  readonly memoryMb: number
  readonly hostname: string
}

/** Everything resolved: what the node announces (plus what it measures itself). */
export interface HostSettings {
  readonly name: string
  readonly slots: number
  readonly tags: readonly string[]
  readonly gpus: readonly Gpu[]
  readonly wattsIdle: number
  readonly wattsLoaded: number
  /** Per kWh; null: unknown (neutral: the farm's median counts). */
  readonly price: number | null
  readonly currency: string | null
  readonly availability: readonly WeeklyWindow[] | null
  readonly apps: { readonly enable: readonly string[]; readonly disable: readonly string[] }
  /** A fixed speed (speedSource 'config'); null: run the benchmark. */
  readonly speed: number | null
}

export class InvalidHostConfigError extends Error {
  static override readonly name = 'InvalidHostConfigError'
  override readonly name = 'InvalidHostConfigError'
  /** The file, or 'command line' for a flag. */
  readonly source: string
  /** The key path ('watts.idle', 'availability[0].days') or flag ('--slots'); null: the whole file. */
  readonly field: string | null

  constructor(source: string, field: string | null, problem: string, options?: ErrorOptions) {
    super(`${source}: ${field === null ? '' : `${field} `}${problem}`, options)
    this.source = source
    this.field = field
  }
}

export const defaultHostConfigPath = (env: NodeJS.ProcessEnv = process.env): string =>
  join(defaultConfigDir(env), 'host.json')

/** Reads the config: `path` (from --config; it must exist) or the default file (absent: defaults). */
export async function loadHostConfig(
  path?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<HostConfig> {
  const file = path ?? defaultHostConfigPath(env)
  let text: string
  try {
    const { size } = await stat(file)
    if (size > MAX_HOST_CONFIG_BYTES) {
      throw new InvalidHostConfigError(file, null, `is larger than ${MAX_HOST_CONFIG_BYTES} bytes`)
    }
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (err instanceof InvalidHostConfigError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && path === undefined) return {}
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`
    throw new InvalidHostConfigError(file, null, why, { cause: err })
  }
  return parseHostConfig(text, file)
}

/** Parses and checks a config file's text; `source` names the file in errors. */
export function parseHostConfig(text: string, source: string): HostConfig {
  let x: unknown
  try {
    x = JSON.parse(text)
  } catch (err) {
    throw new InvalidHostConfigError(source, null, `is not JSON: ${(err as Error).message}`, { cause: err })
  }
  const fail: Fail = (field, problem) => {
    throw new InvalidHostConfigError(source, field, problem)
  }
  const top = section(x, '(top level)', TOP_KEYS, fail)
  const watts = opt(top.watts, (x) => {
    const w = section(x, 'watts', ['idle', 'loaded'], fail)
    const idle = opt(w.idle, (v) => readWatts(v, 'watts.idle', fail))
    const loaded = opt(w.loaded, (v) => readWatts(v, 'watts.loaded', fail))
    if (idle !== undefined && loaded !== undefined && loaded < idle) {
      fail('watts.loaded', `(${loaded}) must be at least watts.idle (${idle})`)
    }
    return { idle, loaded }
  })
  const price = opt(top.price, (x) => {
    const p = section(x, 'price', ['perKwh', 'currency'], fail)
    const perKwh = opt(p.perKwh, (v) => orNull(v, (n) => readPrice(n, 'price.perKwh', fail)))
    return {
      perKwh,
      currency: opt(p.currency, (v) => orNull(v, (c) => readCurrency(c, 'price.currency', fail))),
    }
  })
  const apps = opt(top.apps, (x) => {
    const a = section(x, 'apps', ['enable', 'disable'], fail)
    const enable = opt(a.enable, (v) => readAppNames(v, 'apps.enable', fail)) ?? []
    const disable = opt(a.disable, (v) => readAppNames(v, 'apps.disable', fail)) ?? []
    const both = enable.find((n) => disable.includes(n))
    if (both !== undefined) fail('apps', `both enables and disables ${JSON.stringify(both)}`)
    return { enable, disable }
  })
  const readGpu = (g: unknown, f: string) => {
    const o = section(g, f, ['name', 'memoryMb'], fail)
    return {
      name: wire.readText(o.name, `${f}.name`, 100, fail),
      memoryMb: wire.readInt(o.memoryMb, `${f}.memoryMb`, 0, 2 ** 30, fail),
    }
  }
  return {
    name: opt(top.name, (v) => readName(v, 'name', fail)),
    slots: opt(top.slots, (v) => wire.readInt(v, 'slots', 1, MAX_SLOTS, fail)),
    tags: opt(top.tags, (v) => wire.readTags(v, 'tags', fail)),
    watts,
    price,
    availability: opt(top.availability, (v) =>
      orNull(v, (a) => wire.readList(a, 'availability', 32, (w, f) => readConfigWindow(w, f, fail), fail)),
    ),
    apps,
    gpus: opt(top.gpus, (v) => wire.readList(v, 'gpus', 16, readGpu, fail)),
    speed: opt(top.speed, (v) => readSpeed(v, 'speed', fail)),
  }
}

const TOP_KEYS = ['name', 'slots', 'tags', 'watts', 'price', 'availability', 'apps', 'gpus', 'speed']

/** An object with only the `known` keys (and `_comment`): a typo is an error, not a silent default. */
function section(x: unknown, field: string, known: readonly string[], fail: Fail): Record<string, unknown> {
  if (!wire.isObject(x)) fail(field, 'must be an object')
  const prefix = field === '(top level)' ? '' : `${field}.`
  for (const [k, v] of Object.entries(x)) {
    if (k === '_comment') {
      if (typeof v !== 'string' && !(Array.isArray(v) && v.every((s) => typeof s === 'string'))) {
        fail(`${prefix}_comment`, 'must be a string or a list of strings')
      }
    } else if (!known.includes(k)) fail(`${prefix}${k}`, `is not a known key (known: ${known.join(', ')})`)
  }
  return x
}

const orNull = <T>(x: unknown, read: (x: unknown) => T): T | null => (x === null ? null : read(x))
const opt = <T>(x: unknown, read: (x: unknown) => T): T | undefined => (x === undefined ? undefined : read(x))

function readName(x: unknown, field: string, fail: Fail): string {
  const name = wire.readText(x, field, 100, fail)
  if (name.trim() !== name || /\p{Cc}/u.test(name))
    fail(field, 'must not have control characters or outer spaces')
  return name
}

function readSpeed(x: unknown, field: string, fail: Fail): number {
  const speed = wire.readNumber(x, field, wire.MAX_SPEED, true, fail)
  if (speed < wire.MIN_SPEED) fail(field, `must be at least ${wire.MIN_SPEED} (got ${speed})`)
  return speed
}

const readWatts = (x: unknown, field: string, fail: Fail) =>
  wire.readNumber(x, field, wire.MAX_WATTS, true, fail)
const readPrice = (x: unknown, field: string, fail: Fail) =>
  wire.readNumber(x, field, wire.MAX_PRICE, false, fail)
const readCurrency = (x: unknown, field: string, fail: Fail) =>
  wire.readPattern(x, field, wire.CURRENCY_PATTERN, "a 3-letter currency code like 'EUR'", fail)

function readAppNames(x: unknown, field: string, fail: Fail): string[] {
  return wire.readList(
    x,
    field,
    64,
    (n, f) => wire.readPattern(n, f, APP_NAME, 'an application name', fail),
    fail,
  )
}

/** A window as written: days as numbers (0 = Sunday) or names ('mon'), plus `_comment`. */
function readConfigWindow(x: unknown, field: string, fail: Fail): WeeklyWindow {
  const o = section(x, field, ['days', 'from', 'to'], fail)
  const days = Array.isArray(o.days)
    ? o.days.map((d) =>
        typeof d === 'string' && DAY_NAMES.includes(d.toLowerCase()) ? DAY_NAMES.indexOf(d.toLowerCase()) : d,
      )
    : o.days
  return wire.readWindow({ days, from: o.from, to: o.to }, field, fail)
}

/**
 * Default power draw at the wall from the logical core count (os.cpus().length), for hosts whose owner
 * gave no figures. Rough on purpose: a wall meter beats it, and the auction only compares hosts.
 *   idle   = 25 W + 1 W x cores: a desktop's board, RAM, disks and PSU losses idle at ~25-60 W at the
 *            wall; SPECpower_ssj2008 results show 2-socket servers (100+ threads) idling ~100-200 W.
 *   loaded = 30 W + 5 W x cores: vendor package power per thread at full load is ~2-8 W (Ryzen 7 5800X
 *            105 W TDP / 16 threads = 6.6; Ryzen 9 5950X 142 W PPT / 32 = 4.4; Core i9-13900K 253 W max
 *            turbo / 32 = 7.9; EPYC 7763 280 W TDP / 128 = 2.2); ~5 W is the middle, plus the platform.
 * 2 cores: 27 / 40 W; 8: 33 / 70 W; 16: 41 / 110 W; 32: 57 / 190 W; 128: 153 / 670 W.
 */
export function defaultWatts(cores: number): { idle: number; loaded: number } {
  const n = Math.max(1, Math.floor(cores))
  return { idle: 25 + 1 * n, loaded: 30 + 5 * n }
}

const splitList = (s: string): string[] => s.split(',').flatMap((t) => (t.trim() === '' ? [] : [t.trim()]))
const union = (a: readonly string[] = [], b: readonly string[] = []): string[] => [...new Set([...a, ...b])]

/** The settings to announce: flags over the file over defaults. Flags are checked here. */
export function resolveHostSettings(config: HostConfig, flags: HostFlags, machine: Machine): HostSettings {
  const fail: Fail = (field, problem) => {
    throw new InvalidHostConfigError('command line', field, problem)
  }
  const num = (s: string | undefined, flag: string, read: (x: unknown, f: string, fail: Fail) => number) =>
    s === undefined ? undefined : read(s.trim() === '' ? Number.NaN : Number(s), flag, fail)

  const name = flags.name === undefined ? undefined : readName(flags.name, '--name', fail)
  const slots = num(flags.slots, '--slots', (x, f, fl) => wire.readInt(x, f, 1, MAX_SLOTS, fl))
  const tags = flags.tags === undefined ? undefined : wire.readTags(splitList(flags.tags), '--tags', fail)
  const speed = num(flags.speed, '--speed', readSpeed)
  const price = num(flags.price, '--price', readPrice)
  const currency = flags.currency === undefined ? undefined : readCurrency(flags.currency, '--currency', fail)
  const enableFlags = readAppNames(flags.enableApps ?? [], '--enable-app', fail)
  const disableFlags = readAppNames(flags.disableApps ?? [], '--disable-app', fail)

  // watts: a figure given alone keeps the pair consistent (loaded >= idle) by moving the default
  const def = defaultWatts(machine.cores)
  const idleGiven = num(flags.wattsIdle, '--watts-idle', readWatts) ?? config.watts?.idle
  const loadedGiven = num(flags.wattsLoaded, '--watts-loaded', readWatts) ?? config.watts?.loaded
  const wattsIdle = idleGiven ?? Math.min(def.idle, loadedGiven ?? def.idle)
  const wattsLoaded = loadedGiven ?? Math.max(def.loaded, wattsIdle)
  if (wattsLoaded < wattsIdle) {
    const field = flags.wattsIdle === undefined ? '--watts-loaded' : '--watts-idle'
    fail(field, `gives idle ${wattsIdle} W above loaded ${wattsLoaded} W (file and flags together)`)
  }

  const enable = union(config.apps?.enable, enableFlags).filter((a) => !disableFlags.includes(a))
  const disable = union(config.apps?.disable, disableFlags).filter((a) => !enableFlags.includes(a))
  return {
    name: name ?? config.name ?? (machine.hostname.trim().slice(0, 100) || 'host'),
    slots: slots ?? config.slots ?? 1,
    tags: tags ?? config.tags ?? [],
    gpus: config.gpus ?? [],
    wattsIdle,
    wattsLoaded,
    price: price ?? config.price?.perKwh ?? null,
    currency: currency ?? config.price?.currency ?? null,
    availability: config.availability ?? null,
    apps: { enable, disable },
    speed: speed ?? config.speed ?? null,
  }
}

/** Whether `date` (read in local time) falls in one of the windows; null: always. Pure. */
export function isAvailable(windows: readonly WeeklyWindow[] | null, date: Date): boolean {
  if (windows === null) return true
  const day = date.getDay()
  const yesterday = (day + 6) % 7
  const t = date.getHours() * 60 + date.getMinutes()
  return windows.some((w) => {
    const from = wire.minutesOf(w.from)
    const to = wire.minutesOf(w.to)
    if (from < to) return w.days.includes(day) && t >= from && t < to
    // across midnight: the evening of a listed day, or the morning after one
    return (w.days.includes(day) && t >= from) || (w.days.includes(yesterday) && t < to)
  })
}

/** The heartbeat's availability field as of `date`. */
export function availabilityAt(windows: readonly WeeklyWindow[] | null, date: Date): Availability | null {
  return windows === null ? null : { windows, available: isAvailable(windows, date) }
}
