// What a job asks of the scheduler, fixed at submit: its policy (time against energy cost), what a
// host needs to run it, a license it holds while running, what it waits for, and its failure rules.

export type Policy =
  | { readonly kind: 'fast' }
  /** Cheapest energy such that the job's makespan stays within (1 + slack) x its lower bound. */
  | { readonly kind: 'cheap'; readonly slack: number }
  | { readonly kind: 'balanced' }
  /** Explicit weights on normalised finish time and normalised energy cost. */
  | { readonly kind: 'weights'; readonly time: number; readonly cost: number }

export interface SchedSpec {
  readonly policy: Policy
  readonly requires: {
    readonly tags: readonly string[]
    readonly memoryMb: number
    readonly gpus: number
    /** An exact version or a 'major.minor' prefix of the application; null: any. */
    readonly appVersion: string | null
  }
  readonly license: string | null
  /** Jobs whose task i must be DONE before this job's task i may start (frame by frame). */
  readonly taskDeps: readonly string[]
  /** Not before this time (ms since the epoch), or null. */
  readonly notBefore: number | null
  /** A path on the submitter's machine that must exist first (the submitter's node releases it). */
  readonly waitFile: string | null
  /** Waits for `openfarm release JOB`. */
  readonly manual: boolean
  /** A host that failed this many of the job's tasks is blocklisted for the job (Flamenco: 3). */
  readonly blocklistAfter: number
  /** The job fails when this share of its tasks failed for good (Flamenco: 10%). */
  readonly failRatio: number
}

export const DEFAULT_SCHED: SchedSpec = {
  policy: { kind: 'fast' },
  requires: { tags: [], memoryMb: 0, gpus: 0, appVersion: null },
  license: null,
  taskDeps: [],
  notBefore: null,
  waitFile: null,
  manual: false,
  blocklistAfter: 3,
  failRatio: 0.1,
}

const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$/
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const VERSION = String.raw`\d{1,4}(?:\.\d{1,4}){0,3}`
const PIN_RE = new RegExp(`^(${VERSION})(?:(\\+)|-(${VERSION}))?$`)

/**
 * The versions a job may run with (requires.appVersion), each bound compared over its own parts:
 * `3.4` is any 3.4.x, `3.4.1` any 3.4.1[.x], `3.4-3.6` 3.4.x to 3.6.x, `3.6+` 3.6 and newer.
 */
export interface VersionPin {
  readonly from: readonly number[]
  /** Inclusive, as a prefix; null: no upper bound. */
  readonly to: readonly number[] | null
}

const parts = (v: string): number[] => v.split('.').map(Number)

/** The pin a text names, or null when it names none (or a range whose end is before its start). */
export function parseVersionPin(text: string): VersionPin | null {
  const m = PIN_RE.exec(text)
  if (m === null) return null
  const from = parts(m[1]!)
  if (m[2] === '+') return { from, to: null }
  const to = m[3] === undefined ? from : parts(m[3])
  return comparePrefix(to, from) < 0 ? null : { from, to }
}

/** `version` cut to `bound`'s length, compared with `bound` (parts missing from `version` count as 0). */
function comparePrefix(version: readonly number[], bound: readonly number[]): number {
  for (let i = 0; i < bound.length; i++) {
    const d = (version[i] ?? 0) - bound[i]!
    if (d !== 0) return d
  }
  return 0
}

/** Whether an app's version (as detected: 3.4.1) is within the pin; an unknown one is not. */
export function versionInPin(version: string | null | undefined, pin: VersionPin): boolean {
  if (version == null || !/^\d+(\.\d+)*$/.test(version)) return false
  const v = parts(version)
  return comparePrefix(v, pin.from) >= 0 && (pin.to === null || comparePrefix(v, pin.to) <= 0)
}

type R<T> = { ok: true; value: T } | { ok: false; error: string }

const num = (x: unknown, lo: number, hi: number): x is number =>
  typeof x === 'number' && Number.isFinite(x) && x >= lo && x <= hi

export function parsePolicy(x: unknown): R<Policy> {
  if (typeof x !== 'object' || x === null) return { ok: false, error: 'policy must be an object' }
  const p = x as Record<string, unknown>
  switch (p.kind) {
    case 'fast':
    case 'balanced':
      return { ok: true, value: { kind: p.kind } }
    case 'cheap':
      if (!num(p.slack, 0, 100)) return { ok: false, error: 'policy cheap needs a slack between 0 and 100' }
      return { ok: true, value: { kind: 'cheap', slack: p.slack } }
    case 'weights':
      if (!num(p.time, 0, 1000) || !num(p.cost, 0, 1000) || p.time + p.cost === 0) {
        return { ok: false, error: 'policy weights needs time and cost weights (0..1000, not both 0)' }
      }
      return { ok: true, value: { kind: 'weights', time: p.time, cost: p.cost } }
    default:
      return { ok: false, error: `unknown policy ${JSON.stringify(p.kind)} (fast, cheap, balanced, weights)` }
  }
}

/** Validates a job's scheduling part; absent means the defaults. */
export function parseSchedSpec(x: unknown): R<SchedSpec> {
  if (x === undefined) return { ok: true, value: DEFAULT_SCHED }
  if (typeof x !== 'object' || x === null) return { ok: false, error: 'sched must be an object' }
  const s = x as Record<string, unknown>
  const policy = parsePolicy(s.policy)
  if (!policy.ok) return policy
  const r = s.requires as Record<string, unknown> | null
  if (typeof r !== 'object' || r === null) return { ok: false, error: 'sched.requires must be an object' }
  if (
    !Array.isArray(r.tags) ||
    r.tags.length > 16 ||
    !r.tags.every((t) => typeof t === 'string' && TAG_RE.test(t))
  ) {
    return { ok: false, error: 'requires.tags must be up to 16 short tags' }
  }
  if (!num(r.memoryMb, 0, 1 << 24) || !Number.isInteger(r.memoryMb))
    return { ok: false, error: 'requires.memoryMb' }
  if (!num(r.gpus, 0, 64) || !Number.isInteger(r.gpus))
    return { ok: false, error: 'requires.gpus must be 0..64' }
  if (
    !(r.appVersion === null || (typeof r.appVersion === 'string' && parseVersionPin(r.appVersion) !== null))
  ) {
    return {
      ok: false,
      error: `requires.appVersion (--app-version) must be a version (3.4, 3.4.1), a range from low to high (3.4-3.6) or a floor (3.6+), not ${JSON.stringify(r.appVersion)}`,
    }
  }
  if (!(s.license === null || (typeof s.license === 'string' && ID_RE.test(s.license)))) {
    return { ok: false, error: 'license must be null or a name' }
  }
  const deps = s.taskDeps
  if (
    !Array.isArray(deps) ||
    deps.length > 16 ||
    !deps.every((d) => typeof d === 'string' && ID_RE.test(d))
  ) {
    return { ok: false, error: 'taskDeps must be a list of job ids' }
  }
  if (!(s.notBefore === null || (num(s.notBefore, 0, 8.64e15) && Number.isInteger(s.notBefore)))) {
    return { ok: false, error: 'notBefore must be null or a time in ms since the epoch' }
  }
  if (
    !(
      s.waitFile === null ||
      (typeof s.waitFile === 'string' && s.waitFile.length > 0 && s.waitFile.length <= 4096)
    )
  ) {
    return { ok: false, error: 'waitFile must be null or a path' }
  }
  if (typeof s.manual !== 'boolean') return { ok: false, error: 'manual must be true or false' }
  if (!num(s.blocklistAfter, 1, 1000) || !Number.isInteger(s.blocklistAfter)) {
    return { ok: false, error: 'blocklistAfter must be 1..1000' }
  }
  if (!num(s.failRatio, 0, 1) || s.failRatio === 0) return { ok: false, error: 'failRatio must be in (0, 1]' }
  return {
    ok: true,
    value: {
      policy: policy.value,
      requires: { tags: [...r.tags], memoryMb: r.memoryMb, gpus: r.gpus, appVersion: r.appVersion },
      license: s.license,
      taskDeps: [...deps],
      notBefore: s.notBefore,
      waitFile: s.waitFile,
      manual: s.manual,
      blocklistAfter: s.blocklistAfter,
      failRatio: s.failRatio,
    },
  }
}
