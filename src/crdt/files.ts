// The files a job needs and makes, as the farm document records them. Paths come from other peers,
// so each one is checked to stay inside the directory it is meant for: relative, no '..', no
// absolute or drive paths, no backslashes or control characters. A hostile record is ignored, never
// written to disk.

export const FILE_LIMITS = {
  pathChars: 1024,
  origChars: 4096,
  inputs: 10_000,
  inputsFrom: 16,
  /** A bound on one file's size; the blob store has its own (smaller or equal) one. */
  bytes: 64 * 2 ** 30,
  outputsPerJob: 200_000,
} as const

const HASH_RE = /^[0-9a-f]{64}$/

export function isHash(x: unknown): x is string {
  return typeof x === 'string' && HASH_RE.test(x)
}

/**
 * A relative path with '/' separators that cannot leave the directory it is joined to:
 * no empty, '.' or '..' segment, no leading '/', no drive letter, no backslash, no control character.
 */
export function isSafeRelPath(x: unknown): x is string {
  if (typeof x !== 'string' || x.length === 0 || x.length > FILE_LIMITS.pathChars) return false
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f\\]/.test(x) || /^[A-Za-z]:/.test(x)) return false
  return x.split('/').every((s) => s.length > 0 && s !== '.' && s !== '..')
}

/** One input of a job: where it goes in the task's input directory, and which bytes. */
export interface InputFile {
  readonly path: string
  readonly hash: string
  readonly size: number
  /** The absolute path the scene wrote for it, if it wrote one: the worker remaps it. */
  readonly orig?: string
}

/** One output of a job, recorded by the worker that made it. */
export interface OutputRecord {
  /** Relative to the job's output directory. */
  readonly path: string
  readonly hash: string
  readonly size: number
  readonly frame: number | null
  readonly task: number
  readonly attempt: number
  readonly peer: string
}

type Result<T> = { ok: true; value: T } | { ok: false; error: string }

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)

const isSize = (x: unknown): x is number =>
  typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= FILE_LIMITS.bytes

export function parseInputs(x: unknown): Result<InputFile[]> {
  if (x === undefined) return { ok: true, value: [] }
  if (!Array.isArray(x) || x.length > FILE_LIMITS.inputs) {
    return { ok: false, error: `inputs must be a list of at most ${FILE_LIMITS.inputs} files` }
  }
  const out: InputFile[] = []
  const seen = new Set<string>()
  for (const f of x) {
    if (!isRecord(f)) return { ok: false, error: 'an input must be an object {path, hash, size}' }
    const { path, hash, size, orig } = f
    if (!isSafeRelPath(path)) {
      return {
        ok: false,
        error: `input path ${JSON.stringify(path).slice(0, 80)} is not a safe relative path`,
      }
    }
    if (seen.has(path)) return { ok: false, error: `input path ${path} is listed twice` }
    seen.add(path)
    if (!isHash(hash)) return { ok: false, error: `input ${path}: hash must be 64 lowercase hex digits` }
    if (!isSize(size)) return { ok: false, error: `input ${path}: size is malformed` }
    if (orig !== undefined && !(typeof orig === 'string' && orig.length <= FILE_LIMITS.origChars)) {
      return { ok: false, error: `input ${path}: orig is malformed` }
    }
    out.push(orig === undefined ? { path, hash, size } : { path, hash, size, orig })
  }
  return { ok: true, value: out }
}

/** Output records are stored under their path, with short keys: h hash, s size, f frame, t task, a attempt, p peer. */
export type StoredOutput = Record<string, string | number | null>

export function encodeOutput(o: OutputRecord): StoredOutput {
  return { h: o.hash, s: o.size, f: o.frame, t: o.task, a: o.attempt, p: o.peer }
}

export function parseOutput(path: string, x: unknown, taskCount: number): Result<OutputRecord> {
  if (!isSafeRelPath(path)) {
    return {
      ok: false,
      error: `output path ${JSON.stringify(path).slice(0, 80)} is not a safe relative path`,
    }
  }
  if (!isRecord(x)) return { ok: false, error: `output ${path} is not an object` }
  const { h, s, f, t, a, p } = x
  if (!isHash(h)) return { ok: false, error: `output ${path}: hash is malformed` }
  if (!isSize(s)) return { ok: false, error: `output ${path}: size is malformed` }
  if (f !== null && !(typeof f === 'number' && Number.isSafeInteger(f) && Math.abs(f) <= 1_000_000)) {
    return { ok: false, error: `output ${path}: frame is malformed` }
  }
  if (!(typeof t === 'number' && Number.isSafeInteger(t) && t >= 0 && t < taskCount)) {
    return { ok: false, error: `output ${path}: task is out of range` }
  }
  if (!(typeof a === 'number' && Number.isSafeInteger(a) && a >= 0 && a <= 10_000)) {
    return { ok: false, error: `output ${path}: attempt is malformed` }
  }
  if (typeof p !== 'string' || p.length === 0 || p.length > 128) {
    return { ok: false, error: `output ${path}: peer is malformed` }
  }
  return { ok: true, value: { path, hash: h, size: s, frame: f, task: t, attempt: a, peer: p } }
}
