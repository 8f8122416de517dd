// A client of a node's local API, for the CLI and the tests: finds the node through its data
// directory's api.json, sends the token, and turns failures into named errors a user can act on.

import { readFile } from 'node:fs/promises'
import { type ApiFile, KEEP_ALIVE_KIND } from './api.ts'
import { dataPaths } from './paths.ts'

export class NodeNotRunningError extends Error {
  static override readonly name = 'NodeNotRunningError'
  override readonly name = 'NodeNotRunningError'
}

/** An error the node answered with: `remoteName` is its error class (UnknownJobError, ...). */
export class ApiError extends Error {
  static override readonly name = 'ApiError'
  override readonly name = 'ApiError'
  readonly status: number
  readonly remoteName: string
  constructor(status: number, remoteName: string, message: string) {
    super(message)
    this.status = status
    this.remoteName = remoteName
  }
}

export class ApiClient {
  readonly api: ApiFile
  private readonly dataDir: string

  private constructor(api: ApiFile, dataDir: string) {
    this.api = api
    this.dataDir = dataDir
  }

  static async connect(dataDir: string): Promise<ApiClient> {
    let text: string
    try {
      text = await readFile(dataPaths(dataDir).api, 'utf8')
    } catch {
      throw new NodeNotRunningError(
        `no node is running with data directory ${dataDir}: start one with \`openfarm join\``,
      )
    }
    return new ApiClient(JSON.parse(text) as ApiFile, dataDir)
  }

  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(`${this.api.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.api.token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      })
    } catch (err) {
      throw new NodeNotRunningError(
        `the node of ${this.dataDir} does not answer at ${this.api.url} (stopped or crashed?): start it with \`openfarm join\``,
        { cause: err },
      )
    }
    const data = await res.json().catch(() => null)
    if (!res.ok) throw apiError(res, data)
    return data as T
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path)
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {})
  }

  /**
   * A streamed answer of one JSON value per line (logs --follow; a fetch, POSTed with `body`), until
   * it ends or `signal` aborts. The keep-alives a quiet stream sends (`{"kind":"ping"}`) are not yielded.
   */
  async *lines<T>(path: string, signal: AbortSignal, body?: unknown): AsyncGenerator<T> {
    const res = await this.open(path, signal, body)
    if (res === null) return
    if (!res.ok || res.body === null) throw apiError(res, await res.json().catch(() => null))
    for await (const line of records(res, '\n', signal)) {
      if (line.trim() === '') continue
      const value = JSON.parse(line) as unknown
      if (!isKeepAlive(value)) yield value as T
    }
  }

  /** Calls `onChange` on every change event until `signal` aborts. */
  async watch(onChange: () => void | Promise<void>, signal: AbortSignal): Promise<void> {
    const res = await this.open('/v1/events', signal)
    if (res === null) return
    for await (const event of records(res, '\n\n', signal)) {
      if (event.includes('event: change')) await onChange()
    }
  }

  /** A long-lived GET (a POST of `body`); null when `signal` aborted it. */
  private open(path: string, signal: AbortSignal, body?: unknown): Promise<Response | null> {
    return fetch(`${this.api.url}${path}`, {
      headers: { authorization: `Bearer ${this.api.token}`, 'content-type': 'application/json' },
      signal,
      ...(body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) }),
    }).catch((err) => {
      if (signal.aborted) return null
      throw new NodeNotRunningError(`the node of ${this.dataDir} does not answer`, { cause: err })
    })
  }
}

function isKeepAlive(value: unknown): boolean {
  return (value as { kind?: unknown } | null)?.kind === KEEP_ALIVE_KIND
}

type ErrorBody = { error?: { name: string; message: string } } | null

/** The node's answer to a failed request, as the named error it sent. */
function apiError(res: Response, data: unknown): ApiError {
  const body = data as ErrorBody
  return new ApiError(res.status, body?.error?.name ?? 'Error', body?.error?.message ?? `HTTP ${res.status}`)
}

/** The body of a streamed answer cut at `separator`, until it ends or `signal` aborts. */
async function* records(res: Response, separator: string, signal: AbortSignal): AsyncGenerator<string> {
  if (res.body === null) return
  const decoder = new TextDecoder()
  let buf = ''
  try {
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true })
      let i = buf.indexOf(separator)
      while (i >= 0) {
        yield buf.slice(0, i)
        buf = buf.slice(i + separator.length)
        i = buf.indexOf(separator)
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err
  }
}
