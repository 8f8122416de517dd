// Client API: the node's local HTTP surface, used by the CLI (and later the dashboard and the Blender
// add-on). Bound to 127.0.0.1 by default; every request carries the token from api.json (mode 0600),
// so other accounts on the machine cannot drive the node either. Live updates: GET /v1/events (SSE).

import { randomBytes, timingSafeEqual } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '@libp2p/interface'
import { applyJobAction, isJobAction } from '../crdt/control.ts'
import type { JobView } from '../crdt/jobview.ts'

export const API_VERSION = 1
const MAX_BODY_BYTES = 1024 * 1024
/** How long a stopping API waits for requests in flight before it cuts their connections. */
const CLOSE_GRACE_MS = 2_000
/**
 * How often a streamed answer that has nothing to say sends a keep-alive: well under the idle limits
 * of HTTP clients (Node's fetch gives up after 300 s without headers or without a body chunk).
 */
const KEEP_ALIVE_MS = 15_000
/** What a quiet ndjson stream (logs, fetch: ApiServer.stream) sends now and then: one line clients skip. */
export const KEEP_ALIVE_KIND = 'ping'

export interface ApiBackend {
  info(): Record<string, unknown>
  jobs(): JobView[]
  /** One job with what only live peers know: the progress of its running tasks, its outputs. */
  job(idOrPrefix: string): JobView & Record<string, unknown>
  /** The job's validated event log, grouped by task (for tools and tests). */
  events(idOrPrefix: string): unknown
  hosts(): unknown[]
  submit(body: unknown): Promise<JobView>
  /** Why no alive host can run the job's queued tasks now (null: one can, or none is queued). */
  noHost?(v: JobView): string | null
  /** A task's output lines (from whichever peer ran the attempt), as frames of one JSON object each. */
  logs(
    job: string,
    task: number,
    opts: { attempt?: number; follow: boolean; signal: AbortSignal },
  ): AsyncIterable<Record<string, unknown>>
  /**
   * Pulls a job's outputs into `dir` on this machine (`openfarm fetch`): a frame per output as it is
   * done, then one with the report; replaces files already there only with `overwrite`; stops when
   * `signal` aborts (the client left).
   */
  fetch(
    job: string,
    dir: string,
    opts: { overwrite: boolean; signal: AbortSignal },
  ): AsyncIterable<Record<string, unknown>>
  resolve(idOrPrefix: string): string
  farm: Parameters<typeof applyJobAction>[0]
  /** Resolves once what was accepted is on disk: a 2xx answer means the change survives a crash. */
  persist(): Promise<void>
  onChange(listener: () => void): () => void
}

export interface ApiFile {
  readonly url: string
  readonly token: string
  readonly pid: number
  readonly peerId: string
  readonly version: typeof API_VERSION
}

export class HttpError extends Error {
  static override readonly name = 'HttpError'
  override readonly name = 'HttpError'
  readonly status: number
  readonly errorName: string
  constructor(status: number, errorName: string, message: string) {
    super(message)
    this.status = status
    this.errorName = errorName
  }
}

const STATUS_OF: Record<string, number> = {
  UnknownJobError: 404,
  AmbiguousJobIdError: 409,
  InvalidJobError: 400,
  InvalidSubmitError: 400,
  InvalidSettingsError: 400,
  UnknownAppError: 400,
  InvalidActionError: 400,
  FrozenJobError: 409,
  InvalidFrameRangeError: 400,
  NoAttemptError: 404,
}

/** A path segment, decoded; a malformed %-escape is the client's error, not the server's. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new HttpError(400, 'BadRequest', `malformed %-escape in the path: ${JSON.stringify(part)}`)
  }
}

/** Jobs in list form: no per-task detail. */
export function jobSummary(v: JobView) {
  return {
    id: v.id,
    name: v.spec.name,
    group: v.spec.group,
    app: v.spec.app,
    state: v.state,
    priority: v.priority,
    held: v.held,
    cancelled: v.cancelled,
    tasks: v.tasks.length,
    counts: v.counts,
    waitingOn: v.waitingOn,
    dependsOn: v.spec.dependsOn,
    submittedBy: v.spec.submittedBy,
    submittedAt: v.spec.submittedAt,
    invalid: v.invalid,
    frozen: v.frozen,
  }
}

export interface ApiOptions {
  /** How often a quiet stream sends a keep-alive (15 s; shorter in tests). */
  readonly keepAliveMs?: number
}

export class ApiServer {
  private readonly server: Server
  private readonly backend: ApiBackend
  private readonly token: string
  private readonly log: Logger
  private readonly keepAliveMs: number
  private readonly streams = new Set<ServerResponse>()

  constructor(backend: ApiBackend, log: Logger, opts: ApiOptions = {}) {
    this.backend = backend
    this.log = log
    this.keepAliveMs = opts.keepAliveMs ?? KEEP_ALIVE_MS
    this.token = randomBytes(24).toString('hex')
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.fail(res, err))
    })
  }

  /** Listens and writes api.json for the CLI; returns the URL. */
  async listen(host: string, port: number, apiFile: string, peerId: string): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => resolve())
    })
    const addr = this.server.address() as AddressInfo
    const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
    const file: ApiFile = { url, token: this.token, pid: process.pid, peerId, version: API_VERSION }
    await writeFile(apiFile, `${JSON.stringify(file)}\n`, { mode: 0o600 })
    return url
  }

  async close(apiFile: string): Promise<void> {
    for (const s of this.streams) s.end()
    await rm(apiFile, { force: true })
    // close() lets requests in flight finish; a connection still busy after the grace is cut
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    const cut = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS)
    await closed
    clearTimeout(cut)
  }

  private authorized(req: IncomingMessage): boolean {
    const given = Buffer.from(req.headers.authorization ?? '')
    const want = Buffer.from(`Bearer ${this.token}`)
    return given.length === want.length && timingSafeEqual(given, want)
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.authorized(req)) throw new HttpError(401, 'Unauthorized', 'missing or wrong API token')
    const url = new URL(req.url ?? '/', 'http://localhost')
    const parts = url.pathname.split('/').filter(Boolean).map(decodePart)
    const b = this.backend
    const route = `${req.method} /${parts.slice(0, 2).join('/')}${parts.length > 2 ? '/:id' : ''}${parts.length > 3 ? '/:action' : ''}`
    switch (route) {
      case 'GET /v1/info':
        return send(res, 200, b.info())
      case 'GET /v1/hosts':
        return send(res, 200, b.hosts())
      case 'GET /v1/jobs':
        return send(res, 200, b.jobs().map(jobSummary))
      case 'GET /v1/jobs/:id':
        return send(res, 200, b.job(parts[2]!))
      case 'GET /v1/jobs/:id/:action':
        if (parts[3] !== 'events') throw new HttpError(404, 'NotFound', `no route GET ${url.pathname}`)
        return send(res, 200, b.events(parts[2]!))
      case 'POST /v1/jobs': {
        const job = await b.submit(await readJson(req))
        await b.persist()
        return send(res, 201, { ...jobSummary(job), noHost: b.noHost?.(job) ?? null })
      }
      case 'POST /v1/jobs/:id/:action': {
        const action = parts[3]!
        if (action === 'fetch') {
          const body = (await readJson(req)) as { out?: unknown; overwrite?: unknown } | null
          if (typeof body?.out !== 'string' || !body.out.startsWith('/')) {
            throw new HttpError(400, 'BadRequest', 'fetch needs {out: an absolute directory}')
          }
          const job = b.resolve(parts[2]!)
          const overwrite = body.overwrite === true
          return this.stream(req, res, (signal) => b.fetch(job, body.out as string, { overwrite, signal }))
        }
        if (!isJobAction(action)) throw new HttpError(404, 'NotFound', `no action ${action}`)
        const body = (await readJson(req)) as { value?: unknown } | null
        const value = typeof body?.value === 'number' ? body.value : undefined
        const id = b.resolve(parts[2]!)
        const message = applyJobAction(b.farm, id, action, value)
        await b.persist()
        // removed (here, or by another peer meanwhile): there is no job to show
        const job = action === 'remove' ? undefined : b.farm.view(id)
        if (job === undefined || job.removed) return send(res, 200, { message })
        return send(res, 200, { message, job: jobSummary(b.job(id)) })
      }
      case 'POST /v1/licenses': {
        const body = (await readJson(req)) as { name?: unknown; seats?: unknown } | null
        if (typeof body?.name !== 'string' || typeof body.seats !== 'number') {
          throw new HttpError(400, 'BadRequest', 'a license needs {name, seats}')
        }
        b.farm.setLicense(body.name, body.seats)
        await b.persist()
        return send(res, 200, { message: `license ${body.name}: ${body.seats} seat(s) farm-wide` })
      }
      case 'GET /v1/events':
        return this.events(req, res)
      case 'GET /v1/logs/:id/:action':
        return this.logs(req, res, parts[2]!, parts[3]!, url.searchParams)
      default:
        throw new HttpError(404, 'NotFound', `no route ${req.method} ${url.pathname}`)
    }
  }

  /** Server-sent events: `change` whenever the farm document changed (at most every 100 ms). */
  private events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    })
    res.write(': openfarm\n\n')
    let seq = 0
    let pending: ReturnType<typeof setTimeout> | undefined
    const off = this.backend.onChange(() => {
      if (pending !== undefined) return
      pending = setTimeout(() => {
        pending = undefined
        res.write(`event: change\nid: ${++seq}\ndata: {}\n\n`)
      }, 100)
    })
    const keepAlive = setInterval(() => res.write(': ping\n\n'), this.keepAliveMs)
    this.streams.add(res)
    req.on('close', () => {
      off()
      clearTimeout(pending)
      clearInterval(keepAlive)
      this.streams.delete(res)
    })
  }

  /**
   * A task's lines, streamed as they come (follow) until the attempt ends or the client leaves (see
   * stream(): a follow of a task that has not started, or a render that prints nothing, is kept alive).
   */
  private async logs(
    req: IncomingMessage,
    res: ServerResponse,
    jobRef: string,
    taskText: string,
    q: URLSearchParams,
  ): Promise<void> {
    const task = Number(taskText)
    const attemptText = q.get('attempt')
    const attempt = attemptText === null ? undefined : Number(attemptText)
    if (
      !Number.isSafeInteger(task) ||
      task < 0 ||
      (attempt !== undefined && !Number.isSafeInteger(attempt))
    ) {
      throw new HttpError(400, 'BadRequest', 'logs take a task number (and an attempt number)')
    }
    const job = this.backend.resolve(jobRef)
    return this.stream(req, res, (signal) =>
      this.backend.logs(job, task, {
        signal,
        follow: q.get('follow') === '1',
        ...(attempt === undefined ? {} : { attempt }),
      }),
    )
  }

  /**
   * Streams `frames` as ndjson, one JSON object per line, until they end or the client leaves (their
   * signal aborts then, and they are returned). A quiet stream sends a `{"kind":"ping"}` line every
   * keep-alive period, so the client does not take it for a dead node. An error before the first
   * frame is answered as an HTTP error; after it, as a last `{"kind":"error"}` frame.
   */
  private async stream(
    req: IncomingMessage,
    res: ServerResponse,
    source: (signal: AbortSignal) => AsyncIterable<Record<string, unknown>>,
  ): Promise<void> {
    const abort = new AbortController()
    // the response's close, not the request's: a request whose body was read (POST) closes then
    const gone = () => abort.abort()
    res.on('close', gone)
    res.on('error', gone)
    req.on('error', gone)
    const frames = source(abort.signal)
    // errors before the first frame (unknown job or task) come at once and are answered as errors, not
    // as a stream; a stream with nothing to send yet opens at its first keep-alive
    const open = () => {
      if (res.headersSent || abort.signal.aborted) return
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' })
      this.streams.add(res)
    }
    const keepAlive = setInterval(() => {
      open()
      // a reader that is not reading has bytes waiting for it already: no keep-alive needed
      if (res.headersSent && !res.writableNeedDrain) res.write(`{"kind":"${KEEP_ALIVE_KIND}"}\n`)
    }, this.keepAliveMs)
    try {
      // for-await returns the frames' generator (runs its finally) when the loop is left early
      for await (const frame of frames) {
        open()
        if (abort.signal.aborted) break
        if (!res.write(`${JSON.stringify(frame)}\n`)) await drained(res, abort.signal)
        if (abort.signal.aborted) break
      }
      open()
    } catch (err) {
      if (!res.headersSent && !abort.signal.aborted) throw err
      if (!abort.signal.aborted)
        res.write(`${JSON.stringify({ kind: 'error', message: (err as Error).message })}\n`)
    } finally {
      clearInterval(keepAlive)
      this.streams.delete(res)
      const left = abort.signal.aborted
      abort.abort()
      if (res.headersSent) res.end()
      else if (left) res.destroy()
    }
  }

  private fail(res: ServerResponse, err: unknown): void {
    const e = err as Error
    const status = err instanceof HttpError ? err.status : (STATUS_OF[e.name] ?? 500)
    const name = err instanceof HttpError ? err.errorName : e.name
    if (status >= 500) this.log.error('API error: %s', e.stack ?? e.message)
    if (res.headersSent) {
      res.end()
      return
    }
    send(res, status, { error: { name, message: e.message } })
  }
}

/** Resolves when `res` can take more, or when its reader has gone (`signal`): no 'drain' comes then. */
function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    res.on('drain', done)
    signal.addEventListener('abort', done)
  })
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES)
      throw new HttpError(413, 'TooLarge', `request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return null
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'BadJson', 'request body is not JSON')
  }
}
