// Paired read/write functions for every frame of the log wire, and the bounds of an attempt reference
// (shared with the log store). Readers never trust their input: each throws a named error instead of
// returning something half-valid.

import { isId } from '../../crdt/schema.ts'
import * as c from './constants.ts'
import { InvalidLogFrameError, InvalidLogRequestError } from './errors.ts'
import type { AttemptRef, LogEnd, LogLine, LogRequest } from './types.ts'

/** A server frame, decoded. */
export type Answer =
  | { readonly type: 'lines'; readonly lines: readonly LogLine[] }
  | { readonly type: 'end'; readonly end: LogEnd }
  | { readonly type: 'error'; readonly error: c.ErrorCode; readonly message?: string }

/** The bytes of a received frame as it-length-prefixed hands them over (structural, see docsync). */
export interface FrameBytes {
  readonly byteLength: number
  subarray(begin?: number): Uint8Array
}

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder('utf-8', { fatal: true })

/** Throws InvalidLogRequestError unless `ref` names a job id and bounded task/attempt integers. */
export function checkRef<T extends AttemptRef>(ref: T): T {
  if (typeof ref !== 'object' || ref === null)
    throw new InvalidLogRequestError('the request is not an object')
  if (!isId(ref.job)) throw new InvalidLogRequestError('job id is missing or malformed')
  checkInt('task', ref.task, 0, c.MAX_TASK)
  checkInt('attempt', ref.attempt, 0, c.MAX_ATTEMPT)
  return ref
}

export function checkInt(what: string, x: unknown, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    const got = typeof x === 'number' ? String(x) : typeof x
    throw new InvalidLogRequestError(`${what} must be an integer in ${min}..${max}, got ${got.slice(0, 40)}`)
  }
  return x
}

export function checkRequest(req: LogRequest): LogRequest {
  checkRef(req)
  checkInt('from', req.from, 0, c.MAX_SEQ)
  if (typeof req.follow !== 'boolean') throw new InvalidLogRequestError('follow must be true or false')
  return req
}

/** Cuts an overlong text, saying how much went. */
export function cutText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)} [... ${text.length - max} more characters cut]`
}

export function describeRef(r: AttemptRef): string {
  return `${r.job} task ${r.task} attempt ${r.attempt}`
}

export function encodeRequest(req: LogRequest): Uint8Array {
  const { job, task, attempt, from, follow } = checkRequest(req)
  return frame(c.FrameType.REQUEST, { job, task, attempt, from, follow })
}

/** Throws InvalidLogFrameError (not a request frame, bad JSON) or InvalidLogRequestError (bad fields). */
export function decodeRequest(bytes: FrameBytes): LogRequest {
  const v = payload(bytes, c.FrameType.REQUEST, c.MAX_REQUEST_BYTES)
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new InvalidLogRequestError('the request is not an object')
  }
  const { job, task, attempt, from, follow } = v as Record<string, unknown>
  const req = { job, task, attempt, from, follow } as LogRequest
  return checkRequest(req)
}

export function encodeLines(lines: readonly LogLine[]): Uint8Array {
  return frame(
    c.FrameType.LINES,
    lines.map((l) => [l.seq, l.t, l.stream === 'stdout' ? 0 : 1, l.line]),
  )
}

export function encodeEnd(end: Omit<LogEnd, 'end'>): Uint8Array {
  const body: Record<string, unknown> = { finished: end.finished }
  if (end.ok !== undefined) body.ok = end.ok
  if (end.reason !== undefined) body.reason = cutText(end.reason, c.MAX_REASON_CHARS)
  return frame(c.FrameType.END, body)
}

export function encodeError(error: c.ErrorCode, message?: string): Uint8Array {
  return frame(
    c.FrameType.ERROR,
    message === undefined ? { error } : { error, message: cutText(message, c.MAX_MESSAGE_CHARS) },
  )
}

/** Reads a server frame; throws InvalidLogFrameError on anything malformed. */
export function decodeAnswer(bytes: FrameBytes): Answer {
  const type = bytes.byteLength > 0 ? bytes.subarray()[0] : undefined
  switch (type) {
    case c.FrameType.LINES: {
      const v = payload(bytes, type, c.MAX_FRAME_BYTES)
      if (!Array.isArray(v)) throw new InvalidLogFrameError('a LINES frame holds no array')
      return { type: 'lines', lines: v.map(toLine) }
    }
    case c.FrameType.END: {
      const v = record(payload(bytes, type, c.MAX_FRAME_BYTES))
      if (typeof v.finished !== 'boolean') throw new InvalidLogFrameError('an END frame lacks `finished`')
      const end: { end: true; finished: boolean; ok?: boolean; reason?: string } = {
        end: true,
        finished: v.finished,
      }
      if (v.ok !== undefined) end.ok = bool(v.ok, 'ok')
      if (v.reason !== undefined) end.reason = str(v.reason, c.MAX_REASON_CHARS, 'reason')
      return { type: 'end', end }
    }
    case c.FrameType.ERROR: {
      const v = record(payload(bytes, type, c.MAX_FRAME_BYTES))
      const error = c.ERROR_CODES.find((code) => code === v.error)
      if (error === undefined) throw new InvalidLogFrameError('an ERROR frame with an unknown code')
      if (v.message === undefined) return { type: 'error', error }
      return { type: 'error', error, message: str(v.message, c.MAX_MESSAGE_CHARS, 'message') }
    }
    default:
      throw new InvalidLogFrameError(
        `unexpected frame type ${type === undefined ? '(empty)' : `0x${type.toString(16)}`}`,
      )
  }
}

function frame(type: c.FrameType, body: unknown): Uint8Array {
  const json = utf8.encode(JSON.stringify(body))
  const out = new Uint8Array(json.byteLength + 1)
  out[0] = type
  out.set(json, 1)
  return out
}

function payload(bytes: FrameBytes, type: c.FrameType, max: number): unknown {
  if (bytes.byteLength > max)
    throw new InvalidLogFrameError(`a frame of ${bytes.byteLength} bytes is over ${max}`)
  const all = bytes.subarray()
  if (all[0] !== type) throw new InvalidLogFrameError(`expected frame type 0x${type.toString(16)}`)
  try {
    return JSON.parse(fromUtf8.decode(all.subarray(1)))
  } catch (err) {
    throw new InvalidLogFrameError('the frame is not UTF-8 JSON', { cause: err })
  }
}

function toLine(x: unknown): LogLine {
  if (!Array.isArray(x) || x.length !== 4)
    throw new InvalidLogFrameError('a line is not [seq, t, stream, line]')
  const [seq, t, s, line] = x as unknown[]
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || seq >= c.MAX_SEQ) {
    throw new InvalidLogFrameError('a line has a bad seq')
  }
  if (typeof t !== 'number' || !Number.isFinite(t)) throw new InvalidLogFrameError('a line has a bad time')
  if (s !== 0 && s !== 1) throw new InvalidLogFrameError('a line has a bad stream')
  return { seq, t, stream: s === 0 ? 'stdout' : 'stderr', line: str(line, c.MAX_LINE_CHARS + 64, 'line', 0) }
}

function record(x: unknown): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new InvalidLogFrameError('not an object')
  return x as Record<string, unknown>
}

function bool(x: unknown, what: string): boolean {
  if (typeof x !== 'boolean') throw new InvalidLogFrameError(`${what} is not a boolean`)
  return x
}

function str(x: unknown, max: number, what: string, min = 1): string {
  if (typeof x !== 'string' || x.length < min || x.length > max) {
    throw new InvalidLogFrameError(`${what} is not a string of ${min}..${max} characters`)
  }
  return x
}
