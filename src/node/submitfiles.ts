// The node's side of two client requests that touch files: a submit that brings local files (hashed
// into this node's blob store, so the farm can fetch them from here and then from each other), and
// `logs`, which finds the peer that ran an attempt and follows its lines over the Log Router.

import { isAbsolute } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { FILE_LIMITS, type InputFile, isSafeRelPath } from '../crdt/files.ts'
import type { TaskEvent } from '../crdt/schema.ts'
import { isLogEnd } from '../protocol/logs/index.ts'
import { abortableSleep } from '../protocol/signals.ts'
import { InvalidSubmitError } from '../runner/errors.ts'
import type { BlobStore } from './blobs/store.ts'
import type { FarmNode } from './farmnode.ts'

/** What a submit may add to a job besides its fields: local files and where outputs go. */
export interface SubmitFiles {
  /** Files on this machine: `source` (absolute) goes to `path` in each task's input directory. */
  readonly files?: readonly { source: string; path: string; orig?: string }[]
  /** Absolute directory on this machine that receives the job's outputs as they are made. */
  readonly out?: string
  /** Files already in `out` may be replaced by this job's outputs. */
  readonly overwrite?: boolean
}

export class NoAttemptError extends Error {
  static override readonly name = 'NoAttemptError'
  override readonly name = 'NoAttemptError'
}

/** Adds the submitted files to the store, held for the job; the job's inputs. */
export async function addSubmittedFiles(
  store: BlobStore,
  job: string,
  files: SubmitFiles['files'],
): Promise<InputFile[]> {
  if (files === undefined) return []
  if (!Array.isArray(files) || files.length > FILE_LIMITS.inputs) {
    throw new InvalidSubmitError(`files must be a list of at most ${FILE_LIMITS.inputs} entries`)
  }
  const inputs: InputFile[] = []
  for (const f of files) {
    if (typeof f?.source !== 'string' || !isAbsolute(f.source)) {
      throw new InvalidSubmitError('each file needs an absolute source path')
    }
    if (!isSafeRelPath(f.path)) {
      throw new InvalidSubmitError(`file path ${JSON.stringify(f.path)} is not a safe relative path`)
    }
    let added: { hash: string; size: number }
    try {
      added = await store.addFile(f.source, { job })
    } catch (err) {
      throw new InvalidSubmitError(`cannot read ${f.source}: ${(err as Error).message}`, { cause: err })
    }
    const orig = typeof f.orig === 'string' ? { orig: f.orig } : {}
    inputs.push({ path: f.path, hash: added.hash, size: added.size, ...orig })
  }
  return inputs
}

/**
 * The attempts of a task that started, oldest first, each with the peer that ran it and how it ended
 * (null: no result recorded, as for one that still runs or was requeued).
 */
export function startedAttempts(
  events: readonly TaskEvent[],
): { attempt: number; peer: string; ended: 'DONE' | 'FAIL' | null }[] {
  const byAttempt = new Map<number, string>()
  const ended = new Map<number, { peer: string; state: 'DONE' | 'FAIL' }>()
  for (const e of events) {
    if (e.kind === 'start' && !byAttempt.has(e.attempt)) byAttempt.set(e.attempt, e.peer)
    if (e.kind === 'done' || e.kind === 'fail')
      ended.set(e.attempt, { peer: e.peer, state: e.kind === 'done' ? 'DONE' : 'FAIL' })
  }
  return [...byAttempt]
    .map(([attempt, peer]) => {
      const end = ended.get(attempt)
      return { attempt, peer: end?.peer ?? peer, ended: end?.state ?? null }
    })
    .sort((a, b) => a.attempt - b.attempt)
}

type Frame = Record<string, unknown>

/** States a task does not leave: a follow ends there. */
const ENDED = new Set(['DONE', 'FAIL', 'CANCEL'])

/**
 * A task's lines as API frames: which attempt on which host, then its lines, then its end. With
 * `follow` (and no attempt asked for), waits for the task to start, and goes on to the newest attempt
 * started after the one shown when that one fails, is requeued or cannot be read, until the task is
 * DONE, FAIL or CANCEL (an attempt's end may come before the task's state says so, and an attempt
 * may be claimed but never start): then a last frame says the task's state.
 */
export async function* logFrames(
  node: FarmNode,
  job: string,
  task: number,
  opts: { attempt?: number; follow: boolean; signal: AbortSignal },
): AsyncGenerator<Frame> {
  const spec = node.farm.read(job)?.spec
  if (spec === undefined) throw new NoAttemptError(`no job ${job}`)
  if (task >= spec.taskCount) throw new NoAttemptError(`job ${job} has tasks 0 to ${spec.taskCount - 1}`)
  const names = () => new Map(node.hosts().map((h) => [h.peer, h.name]))
  const across = opts.follow && opts.attempt === undefined
  /** The attempt shown last (following across attempts: the next one shown is newer). */
  let shown: number | undefined
  /** Reading `shown` again after an error: from this line on, after this wait. */
  let again: { from: number; waitMs: number } | undefined
  for (;;) {
    // reading an attempt again only while it is the task's current one, and runs
    const now = node.farm.view(job)?.tasks[task]
    if (again !== undefined && !runs(now, shown)) again = undefined
    const started = startedAttempts(node.farm.read(job)?.tasks[task] ?? [])
    const pick =
      opts.attempt !== undefined
        ? started.find((s) => s.attempt === opts.attempt)
        : shown === undefined
          ? started.at(-1)
          : again !== undefined
            ? started.find((s) => s.attempt === shown)
            : started.filter((s) => s.attempt > shown!).at(-1)
    if (pick === undefined) {
      if (!opts.follow) {
        throw new NoAttemptError(
          opts.attempt === undefined
            ? `task ${job}/${task} has not started yet (use --follow to wait for it)`
            : `task ${job}/${task} has no attempt ${opts.attempt}`,
        )
      }
      const state = now?.state
      if (across && (state === undefined || ENDED.has(state))) {
        yield { kind: 'task', state: state ?? 'gone' }
        return
      }
      await changed(node, opts.signal)
      if (opts.signal.aborted) return
      continue
    }
    const from = again?.from ?? 0
    if (again === undefined) {
      shown = pick.attempt
      // an earlier attempt's own end, not the task's state now (attempt 0 failed; the task is DONE)
      const state = now !== undefined && now.attempt === pick.attempt ? now.state : (pick.ended ?? 'REQUEUED')
      yield {
        kind: 'attempt',
        attempt: pick.attempt,
        peer: pick.peer,
        host: names().get(pick.peer) ?? null,
        state,
      }
    }
    let next = from
    try {
      const req = { job, task, attempt: pick.attempt, from, follow: opts.follow }
      for await (const x of node.libp2p.services.logs.tail(peerIdFromString(pick.peer), req, {
        signal: opts.signal,
      })) {
        if (isLogEnd(x))
          yield {
            kind: 'end',
            finished: x.finished,
            ...(x.ok === undefined ? {} : { ok: x.ok }),
            reason: x.reason ?? null,
          }
        else {
          next = x.seq + 1
          yield { kind: 'line', seq: x.seq, t: x.t, stream: x.stream, line: x.line }
        }
      }
      again = undefined
    } catch (err) {
      if (opts.signal.aborted) return
      const who = names().get(pick.peer) ?? pick.peer
      // following across attempts: the same attempt is read again, from where it broke off, while it
      // is the task's current one and runs (its host may be back, at another address); else the next
      // one is shown when it starts (a worker that stopped or died hands its attempt back)
      const retry = across && runs(node.farm.view(job)?.tasks[task], pick.attempt)
      if (again === undefined) {
        yield {
          kind: 'error',
          message: `cannot read the lines of attempt ${pick.attempt} from ${who}: ${(err as Error).message}`,
          following: across,
        }
      }
      if (!across) return
      if (retry) {
        const waitMs = again === undefined ? RETRY_TAIL_MS : Math.min(again.waitMs * 2, MAX_RETRY_TAIL_MS)
        again = { from: next, waitMs }
        try {
          await abortableSleep(waitMs, opts.signal, () => new Error('the reader left'))
        } catch {
          return // the reader left
        }
        continue
      }
      again = undefined
    }
    if (!opts.follow || opts.attempt !== undefined) return
  }
}

/** Whether `attempt` is the task's current attempt and the task has not ended. */
function runs(t: { attempt: number; state: string } | undefined, attempt: number | undefined): boolean {
  return t !== undefined && t.attempt === attempt && !ENDED.has(t.state)
}

/** A follow reads an attempt whose lines it could not read again after this, then twice as long each time. */
const RETRY_TAIL_MS = 1_000
const MAX_RETRY_TAIL_MS = 10_000

/** Resolves on the next change of the farm document (or when `signal` aborts). */
function changed(node: FarmNode, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      node.farm.doc.off('update', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    node.farm.doc.on('update', done)
    signal.addEventListener('abort', done, { once: true })
  })
}
