// The API's streamed answers (GET /v1/logs) against real HTTP on 127.0.0.1: a quiet stream keeps its
// connection busy (headers at the first keep-alive, then a keep-alive line every period), so a client's
// idle limit (Node's fetch: 300 s) does not end it; the client skips the keep-alives; a reader that
// leaves while the API waits for it to read frees the handler and closes the frames' generator.

import assert from 'node:assert/strict'
import { type IncomingMessage, request } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { type ApiBackend, ApiServer } from '../../src/node/api.ts'
import { ApiClient, ApiError } from '../../src/node/client.ts'
import type { OutputHomes } from '../../src/node/outputhomes.ts'
import { dataPaths } from '../../src/node/paths.ts'
import { fetchFrames } from '../../src/node/serve.ts'
import { NoAttemptError } from '../../src/node/submitfiles.ts'
import { tempDir, waitFor } from '../helpers.ts'

type Frame = Record<string, unknown>
type LogsImpl = (opts: { signal: AbortSignal }) => AsyncIterable<Frame>

const KEEP_ALIVE_MS = 50
/** A client that gives up on a connection quiet this long (as fetch does after 300 s). */
const IDLE_LIMIT_MS = 400

const quietLog = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false })

/** Resolves after `ms`, or early when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(t)
      resolve()
    })
  })
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(t))
}

describe('API streams', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let api: ApiServer
  let url: string
  let token: string
  let client: ApiClient
  /** What GET /v1/logs/JOB/... streams, by JOB. */
  const logs = new Map<string, LogsImpl>()
  /** POST /v1/jobs/JOB/fetch: two outputs, the second after a quiet spell longer than IDLE_LIMIT_MS. */
  const pulls: { signal: AbortSignal | undefined; overwrite: boolean | undefined }[] = []
  const homes: Pick<OutputHomes, 'pullOnce'> = {
    pullOnce: async (_job, _dir, opts = {}) => {
      const pull = { signal: opts.signal, overwrite: opts.overwrite }
      pulls.push(pull)
      const never = new AbortController().signal
      opts.onOutcome?.('f1.png', { kind: 'written' })
      await sleep(3 * IDLE_LIMIT_MS, opts.signal ?? never)
      opts.signal?.throwIfAborted()
      opts.onOutcome?.('f2.png', { kind: 'failed', reason: 'no holder found' })
      return {
        written: ['f1.png'],
        present: [],
        conflicts: [],
        failed: [{ path: 'f2.png', reason: 'no holder found' }],
      }
    },
  }

  before(async () => {
    dir = await tempDir('apistream')
    const backend = {
      resolve: (id: string) => id,
      logs: (job: string, _task: number, opts: { signal: AbortSignal }) => {
        const impl = logs.get(job)
        if (impl === undefined) throw Object.assign(new Error(`no job ${job}`), { name: 'UnknownJobError' })
        return impl(opts)
      },
      fetch: (job: string, dir: string, opts: { overwrite: boolean; signal: AbortSignal }) =>
        fetchFrames(homes, job, dir, 2, opts),
    } as unknown as ApiBackend
    api = new ApiServer(backend, quietLog as never, { keepAliveMs: KEEP_ALIVE_MS })
    url = await api.listen('127.0.0.1', 0, dataPaths(dir.path).api, 'peer')
    token = (api as unknown as { token: string }).token
    client = await ApiClient.connect(dir.path)
  })

  after(async () => {
    await api.close(dataPaths(dir.path).api)
    await dir.remove()
  })

  const streams = () => (api as unknown as { streams: Set<unknown> }).streams

  /** A GET with an idle limit: rejects when the connection is quiet for IDLE_LIMIT_MS. */
  function get(path: string): Promise<{ res: IncomingMessage; body: Promise<string> }> {
    return new Promise((resolve, reject) => {
      const req = request(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.setEncoding('utf8')
        let text = ''
        res.on('data', (chunk: string) => {
          text += chunk
        })
        const body = new Promise<string>((ok, fail) => {
          res.on('end', () => ok(text))
          res.on('error', fail)
          req.on('error', fail)
        })
        body.catch(() => {})
        resolve({ res, body })
      })
      req.setTimeout(IDLE_LIMIT_MS, () => req.destroy(new Error(`quiet for ${IDLE_LIMIT_MS} ms`)))
      req.on('error', reject)
      req.end()
    })
  }

  it('keeps a quiet follow alive: headers by the first keep-alive, then keep-alives while nothing comes', async () => {
    // a follow of a task that has not started: nothing for a while (three idle limits), then its lines
    logs.set('quiet', async function* ({ signal }) {
      await sleep(3 * IDLE_LIMIT_MS, signal)
      yield { kind: 'line', line: 'hello' }
      await sleep(3 * IDLE_LIMIT_MS, signal) // a render that prints nothing for a while
      yield { kind: 'task', state: 'DONE' }
    })
    const t0 = Date.now()
    const { res, body } = await get('/v1/logs/quiet/0?follow=1')
    assert.ok(Date.now() - t0 < IDLE_LIMIT_MS, 'the headers come before the first frame')
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], 'application/x-ndjson')
    const frames = (await body)
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Frame)
    const pings = frames.filter((f) => f.kind === 'ping')
    assert.ok(pings.length >= 10, `keep-alives while quiet (${pings.length})`)
    assert.deepEqual(
      frames.filter((f) => f.kind !== 'ping'),
      [
        { kind: 'line', line: 'hello' },
        { kind: 'task', state: 'DONE' },
      ],
    )
  })

  it('the client does not yield the keep-alives', async () => {
    logs.set('quiet2', async function* ({ signal }) {
      await sleep(10 * KEEP_ALIVE_MS, signal)
      yield { kind: 'line', line: 'a' }
      await sleep(10 * KEEP_ALIVE_MS, signal)
      yield { kind: 'task', state: 'DONE' }
    })
    const got: Frame[] = []
    for await (const f of client.lines<Frame>('/v1/logs/quiet2/0?follow=1', new AbortController().signal)) {
      got.push(f)
    }
    assert.deepEqual(got, [
      { kind: 'line', line: 'a' },
      { kind: 'task', state: 'DONE' },
    ])
  })

  it('still answers an error that comes before any frame as an HTTP error', async () => {
    logs.set('bad', async function* () {
      yield* []
      throw new NoAttemptError('job bad has tasks 0 to 1') // as logFrames says it
    })
    const lines = client.lines<Frame>('/v1/logs/bad/7', new AbortController().signal)
    await assert.rejects(lines.next(), (err: unknown) => {
      assert.ok(err instanceof ApiError)
      assert.equal(err.status, 404)
      assert.equal(err.message, 'job bad has tasks 0 to 1')
      return true
    })
    const { res } = await get('/v1/logs/nosuchjob/0')
    assert.equal(res.statusCode, 404)
  })

  it('frees the handler and closes the frames when a reader that stopped reading leaves', async () => {
    let yielded = 0
    let closed = 0
    let allClosed: () => void = () => {}
    const done = new Promise<void>((resolve) => {
      allClosed = resolve
    })
    const READERS = 3
    logs.set('flood', async function* ({ signal }) {
      try {
        for (let i = 0; !signal.aborted; i++) {
          yielded++
          yield { kind: 'line', seq: i, line: 'x'.repeat(4000) }
        }
      } finally {
        if (++closed === READERS) allClosed()
      }
    })
    for (let k = 0; k < READERS; k++) {
      await new Promise<void>((resolve, reject) => {
        const req = request(
          `${url}/v1/logs/flood/0?follow=1`,
          { headers: { authorization: `Bearer ${token}` } },
          (res) => {
            res.pause() // a pager that stops reading...
            // ...until the API waits for it (the count of frames made stays put), then quits
            let seen = -1
            waitFor(
              'the API to wait for the reader',
              () => {
                const stalled = yielded === seen
                seen = yielded
                return stalled
              },
              { stepMs: 100, timeoutMs: 5_000 },
            ).then(() => {
              req.destroy()
              resolve()
            }, reject)
          },
        )
        req.on('error', () => {})
        req.end()
      })
    }
    await within(3_000, 'every frame generator closed', done)
    await waitFor('the API to drop the responses', () => streams().size === 0, { timeoutMs: 3_000 })
  })

  it('streams a fetch: a frame per output as it comes home, then the report; a reader that leaves stops it', async () => {
    const frames: Frame[] = []
    for await (const f of client.lines<Frame>('/v1/jobs/j1/fetch', new AbortController().signal, {
      out: '/x',
    }))
      frames.push(f)
    assert.deepEqual(frames, [
      { kind: 'file', path: 'f1.png', outcome: 'written' },
      { kind: 'file', path: 'f2.png', outcome: 'failed', reason: 'no holder found' },
      {
        kind: 'report',
        dir: '/x',
        outputs: 2,
        written: ['f1.png'],
        present: [],
        conflicts: [],
        failed: [{ path: 'f2.png', reason: 'no holder found' }],
      },
    ])
    assert.equal(pulls.at(-1)?.overwrite, false, 'files already there are kept unless asked')
    // a reader that leaves (ctrl-c): the pull is told to stop
    const leave = new AbortController()
    const lines = client.lines<Frame>('/v1/jobs/j1/fetch', leave.signal, { out: '/x', overwrite: true })
    assert.equal((await lines.next()).value?.path, 'f1.png')
    assert.equal(pulls.at(-1)?.overwrite, true, '--overwrite reaches the pull')
    leave.abort()
    await lines.return(undefined)
    await waitFor('the pull to be stopped', () => pulls.at(-1)?.signal?.aborted === true)
  })
})
