// Settings: the values a job gives its application. Coerced from CLI strings, checked against the
// app's schema, with every problem named after the setting. Validation is idempotent, so the runner
// re-checks a job's args from the farm document (another peer's word) before rendering argv.

import { LIMITS } from '../crdt/schema.ts'
import type { AppDef } from './apps.ts'
import { InvalidSettingsError } from './errors.ts'

export type SettingType = 'string' | 'integer' | 'number' | 'boolean'
export type SettingValue = string | number | boolean

export interface SettingDef {
  readonly type: SettingType
  readonly default?: SettingValue
  /** Bounds for integer and number settings, inclusive. */
  readonly min?: number
  readonly max?: number
  /** Regular expression a string setting must match in full. */
  readonly pattern?: string
  /** 'argv': a string holding a JSON array of strings, spliced into argv with '{...name}'. */
  readonly format?: 'argv'
  readonly description: string
}

const TYPES: ReadonlySet<string> = new Set<SettingType>(['string', 'integer', 'number', 'boolean'])
const INT_RE = /^[+-]?\d+$/
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i

const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

/** Applies defaults, coerces CLI strings, rejects unknown keys and bad values; throws InvalidSettingsError. */
export function validateSettings(
  app: AppDef,
  raw: Readonly<Record<string, SettingValue>>,
): Record<string, SettingValue> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidSettingsError(`settings for app ${app.name} must be an object`)
  }
  const known = Object.keys(app.settings)
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(app.settings, key)) {
      const list = known.length === 0 ? 'it takes no settings' : `its settings: ${known.join(', ')}`
      throw new InvalidSettingsError(`unknown setting ${show(key)} for app ${app.name} (${list})`)
    }
  }
  const out: Record<string, SettingValue> = {}
  for (const [key, def] of Object.entries(app.settings)) {
    const given = Object.hasOwn(raw, key) ? raw[key] : undefined
    const value = given ?? def.default
    if (value === undefined) {
      throw new InvalidSettingsError(`setting ${key} of app ${app.name} is required: ${def.description}`)
    }
    const coerced = coerce(def, value)
    const problem = coerced === undefined ? `must be ${article(def)}` : check(def, coerced)
    if (problem !== null) {
      throw new InvalidSettingsError(`setting ${key} of app ${app.name} ${problem}, got ${show(value)}`)
    }
    out[key] = coerced as SettingValue
  }
  return out
}

/** A problem with a setting definition itself (for app definitions), or null. */
export function checkSetting(key: string, def: SettingDef): string | null {
  const at = `setting ${key}`
  if (!TYPES.has(def.type)) return `${at}: unknown type ${show(def.type)}`
  const numeric = def.type === 'integer' || def.type === 'number'
  if (!numeric && (def.min !== undefined || def.max !== undefined))
    return `${at}: min/max need a numeric type`
  if (def.min !== undefined && def.max !== undefined && def.min > def.max) return `${at}: min is above max`
  if (def.type !== 'string' && (def.pattern !== undefined || def.format !== undefined)) {
    return `${at}: pattern and format need type string`
  }
  if (def.pattern !== undefined) {
    try {
      new RegExp(def.pattern, 'u')
    } catch (err) {
      return `${at}: bad pattern: ${(err as Error).message}`
    }
  }
  if (def.format !== undefined && def.format !== 'argv') return `${at}: unknown format ${show(def.format)}`
  if (def.default !== undefined) {
    const value = coerce(def, def.default)
    const problem = value === undefined ? `is not ${article(def)}` : check(def, value)
    if (problem !== null) return `${at}: default ${problem}`
  }
  return null
}

function article(def: SettingDef): string {
  if (def.type === 'integer') return 'an integer'
  if (def.format === 'argv') return 'a JSON array of strings'
  return `a ${def.type}`
}

// Strings from the command line become numbers and booleans; nothing else changes type.
function coerce(def: SettingDef, v: SettingValue): SettingValue | undefined {
  switch (def.type) {
    case 'string':
      return typeof v === 'string' ? v : undefined
    case 'boolean':
      if (typeof v === 'boolean') return v
      return v === 'true' ? true : v === 'false' ? false : undefined
    case 'integer': {
      const n = typeof v === 'string' && INT_RE.test(v.trim()) ? Number(v) : v
      return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined
    }
    case 'number': {
      const n = typeof v === 'string' && NUM_RE.test(v.trim()) ? Number(v) : v
      return typeof n === 'number' && Number.isFinite(n) ? n : undefined
    }
  }
}

function check(def: SettingDef, v: SettingValue): string | null {
  if (typeof v === 'number') {
    if (def.min !== undefined && v < def.min) return `must be at least ${def.min}`
    if (def.max !== undefined && v > def.max) return `must be at most ${def.max}`
    return null
  }
  if (typeof v !== 'string') return null
  if (v.length > LIMITS.argChars) return `must be at most ${LIMITS.argChars} characters`
  if (v.includes('\0')) return 'must not contain NUL characters'
  if (def.pattern !== undefined && !new RegExp(`^(?:${def.pattern})$`, 'u').test(v)) {
    return `must match /${def.pattern}/`
  }
  if (def.format === 'argv') return checkArgvJson(v)
  return null
}

function checkArgvJson(text: string): string | null {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return 'must be a JSON array of strings (it is not valid JSON)'
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
    return 'must be a JSON array of strings'
  }
  if (parsed.some((a: string) => a.includes('\0'))) return 'must not contain NUL characters'
  if (parsed.length === 0 || parsed[0] === '') return 'must name a command first'
  if (parsed.length > LIMITS.args) return `must have at most ${LIMITS.args} elements`
  return null
}

/** The argv a validated 'argv'-format setting holds. */
export function argvOfSetting(text: string): string[] {
  return JSON.parse(text) as string[]
}
